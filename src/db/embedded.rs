//! A private PostgreSQL cluster, started from the binaries installed on the machine (never a
//! download). It makes `topup serve` work with no configuration and gives the tests a server
//! of their own.
//!
//! PostgreSQL refuses to run as root. When Topup runs as root, the cluster folder is given to
//! the `postgres` system user (the one the PostgreSQL package creates) and every PostgreSQL
//! program runs as that user. When that user cannot reach the folder (a checkout under
//! `/root`, say), the cluster lives under `/var/tmp` instead, and the log says so.
//!
//! The cluster listens only on a free 127.0.0.1 port (no Unix socket). A second start on the
//! same folder reuses the data, and an already running cluster there is joined, not restarted.

use std::path::{Path, PathBuf};
use std::process::Output;

use diesel::{ConnectionError, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};
use tokio::process::Command;

/// Why the private cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No PostgreSQL programs on this machine.
    #[error(
        "no PostgreSQL binaries found (initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin): \
         install PostgreSQL (e.g. `apt install postgresql`), or set DATABASE_URL to a running server"
    )]
    NoBinaries,
    /// Running as root with nobody to hand the cluster to.
    #[error(
        "running as root, and PostgreSQL refuses root, but there is no `postgres` system user to run it: \
         run Topup as a normal user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// A file-system step failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PostgreSQL program failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// The program and what it was asked to do.
        what: String,
        /// Its output, or the last lines of the server log.
        detail: String,
    },
    /// The started cluster did not accept a connection.
    #[error("cannot connect to the private cluster: {0}")]
    Connect(#[from] ConnectionError),
    /// A statement on the started cluster failed.
    #[error("private cluster: {0}")]
    Query(#[from] diesel::result::Error),
}

/// How to run the private cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The cluster folder (PGDATA). Created when missing.
    pub dir: PathBuf,
    /// Trade durability for speed (fsync off): for throw-away test clusters only.
    pub ephemeral: bool,
}

/// A running private cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    owner: Option<(Uid, Gid)>,
    started_here: bool,
    relocated: bool,
    /// The superuser's password (clusters created before passwords existed have none and
    /// keep `trust`).
    password: Option<String>,
}

impl Cluster {
    /// Starts the cluster in `options.dir` (running `initdb` first when the folder holds no
    /// cluster yet), or joins the one already running there.
    pub async fn start(options: &ClusterOptions) -> Result<Cluster, EmbeddedError> {
        let bin = find_binaries().ok_or(EmbeddedError::NoBinaries)?;
        let owner = if Uid::effective().is_root() {
            let user = User::from_name("postgres")
                .ok()
                .flatten()
                .ok_or(EmbeddedError::NoPostgresUser)?;
            Some((user.uid, user.gid))
        } else {
            None
        };

        let mut dir = absolute(&options.dir)?;
        prepare_dir(&dir, owner)?;
        let mut relocated = false;
        if !owner_can_reach(&dir, owner).await {
            let fallback = fallback_dir(&dir);
            tracing::warn!(
                wanted = %dir.display(),
                using = %fallback.display(),
                "the postgres user cannot reach the data folder (a parent folder is closed to it); \
                 the cluster lives in the fallback folder instead"
            );
            prepare_dir(&fallback, owner)?;
            dir = fallback;
            relocated = true;
        }

        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            owner,
            started_here: false,
            relocated,
            password: None,
        };
        let password_file = password_file(&cluster.dir);
        if !cluster.dir.join("PG_VERSION").exists() {
            let password = generated_password();
            write_private(&password_file, &password)?;
            cluster.init(options.ephemeral, &password).await?;
        }
        cluster.password = std::fs::read_to_string(&password_file)
            .ok()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        if let Some(port) = cluster.running_port() {
            cluster.port = port;
            tracing::info!(port, dir = %cluster.dir.display(), "joined the running private PostgreSQL");
            return Ok(cluster);
        }
        cluster.launch().await?;
        Ok(cluster)
    }

    /// The loopback port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster folder actually in use (see the module doc about relocation).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the cluster lives in the fallback folder because the wanted one was closed.
    pub fn relocated(&self) -> bool {
        self.relocated
    }

    /// Whether this process started the server (and so should stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// A connection URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        match &self.password {
            Some(password) => format!(
                "postgres://postgres:{password}@127.0.0.1:{}/{database}",
                self.port
            ),
            None => format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
        }
    }

    /// Creates `database` unless it exists.
    pub async fn ensure_database(&self, database: &str) -> Result<(), EmbeddedError> {
        #[derive(diesel::QueryableByName)]
        struct Found {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            found: bool,
        }
        let mut conn = AsyncPgConnection::establish(&self.url("postgres")).await?;
        let exists: Found =
            sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
                .bind::<diesel::sql_types::Text, _>(database)
                .get_result(&mut conn)
                .await?;
        if !exists.found {
            // CREATE DATABASE takes no bind parameters; the name is quoted as an identifier.
            sql_query(format!(
                "CREATE DATABASE \"{}\"",
                database.replace('"', "\"\"")
            ))
            .execute(&mut conn)
            .await?;
        }
        Ok(())
    }

    /// Stops the server if this process started it (fast shutdown: open sessions are ended,
    /// committed data is safe).
    pub async fn stop(&self) -> Result<(), EmbeddedError> {
        if !self.started_here {
            return Ok(());
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .await
            .map_err(|e| io("run pg_ctl stop", e))?;
        check(&out, "pg_ctl stop")?;
        tracing::info!(dir = %self.dir.display(), "private PostgreSQL stopped");
        Ok(())
    }

    /// Restarts the server on the same port (fast: open sessions are ended), as an operator
    /// or a crash would; clients see their connections break and must reconnect.
    pub async fn restart(&self) -> Result<(), EmbeddedError> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-m", "fast", "-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port))
            .arg("restart")
            .output()
            .await
            .map_err(|e| io("run pg_ctl restart", e))?;
        check(&out, "pg_ctl restart")
    }

    /// Starts a streaming replica of this cluster in `dir` (on a free port of its own), or
    /// joins the one already running there: `pg_basebackup -R` copies the cluster and
    /// writes the standby settings (its `primary_conninfo` logs in as this superuser), and
    /// the copy then follows every change of this one, read-only. The replica's superuser
    /// and password are this cluster's.
    pub async fn start_replica(&self, dir: &Path) -> Result<Cluster, EmbeddedError> {
        let dir = absolute(dir)?;
        prepare_dir(&dir, self.owner)?;
        let mut replica = Cluster {
            dir,
            bin: self.bin.clone(),
            port: 0,
            owner: self.owner,
            started_here: false,
            relocated: false,
            password: self.password.clone(),
        };
        if let Some(password) = &self.password {
            write_private(&password_file(&replica.dir), password)?;
        }
        if !replica.dir.join("PG_VERSION").exists() {
            let mut source = format!("host=127.0.0.1 port={} user=postgres", self.port);
            if let Some(password) = &self.password {
                source.push_str(&format!(" password={password}"));
            }
            let out = self
                .command("pg_basebackup")
                .arg("-D")
                .arg(&replica.dir)
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-d"])
                .arg(source)
                .output()
                .await
                .map_err(|e| io("run pg_basebackup", e))?;
            check(&out, "pg_basebackup")?;
            // The copy carries the primary's log; the replica writes its own.
            let _ = std::fs::remove_file(replica.dir.join("server.log"));
        }
        if let Some(port) = replica.running_port() {
            replica.port = port;
            return Ok(replica);
        }
        replica.launch().await?;
        Ok(replica)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.program(program));
        // PostgreSQL programs complain when they cannot read the current folder.
        cmd.current_dir("/").kill_on_drop(false);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    /// A PostgreSQL program: in the folder `initdb` and `pg_ctl` were found in, else beside
    /// the real `pg_ctl` (a folder on PATH may link only a few of them).
    fn program(&self, program: &str) -> PathBuf {
        let here = self.bin.join(program);
        if here.is_file() {
            return here;
        }
        std::fs::canonicalize(self.bin.join("pg_ctl"))
            .ok()
            .and_then(|pg_ctl| pg_ctl.parent().map(|dir| dir.join(program)))
            .filter(|beside| beside.is_file())
            .unwrap_or(here)
    }

    async fn init(&self, ephemeral: bool, password: &str) -> Result<(), EmbeddedError> {
        tracing::info!(dir = %self.dir.display(), "creating a private PostgreSQL cluster");
        // Every connection, loopback included, needs the superuser's password. initdb reads
        // it from a file of its own user's, in a folder only that user can enter, removed
        // as soon as initdb is done.
        let handover = std::env::temp_dir().join(format!("topup-initdb-{}", generated_password()));
        prepare_dir(&handover, self.owner)?;
        let pwfile = handover.join("password");
        write_private(&pwfile, &format!("{password}\n"))?;
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(&pwfile, Some(uid), Some(gid))
                .map_err(|e| io("give the password file to the postgres user", e.into()))?;
        }
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&self.dir).args([
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        cmd.arg(format!("--pwfile={}", pwfile.display()));
        if ephemeral {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().await;
        let _ = std::fs::remove_dir_all(&handover);
        let out = out.map_err(|e| io("run initdb", e))?;
        check(&out, "initdb")?;

        let mut settings = String::from(
            "\n# Added by Topup: loopback only, no Unix socket; the port is chosen at each start.\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\n\
             max_connections = 300\n",
        );
        if ephemeral {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        let conf = self.dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| io("read postgresql.conf", e))?;
        text.push_str(&settings);
        std::fs::write(&conf, text).map_err(|e| io("write postgresql.conf", e))?;
        Ok(())
    }

    /// The port of a live postmaster already serving this folder, if any.
    fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.dir.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let port: u16 = lines.nth(2)?.trim().parse().ok()?;
        let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => true,
            Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
        alive.then_some(port)
    }

    async fn launch(&mut self) -> Result<(), EmbeddedError> {
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let out = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.dir)
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start")
                .output()
                .await
                .map_err(|e| io("run pg_ctl start", e))?;
            if out.status.success() {
                self.port = port;
                self.started_here = true;
                tracing::info!(port, dir = %self.dir.display(), "private PostgreSQL started");
                return Ok(());
            }
            // Another process may have started the same cluster a moment ago: join it.
            if let Some(port) = self.running_port() {
                self.port = port;
                return Ok(());
            }
            last_error = Some(EmbeddedError::Command {
                what: "pg_ctl start".into(),
                detail: format!("{}; server log: {}", output_text(&out), self.log_tail()),
            });
        }
        Err(last_error.unwrap_or(EmbeddedError::NoBinaries))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

/// Finds the folder holding `initdb` and `pg_ctl`: PATH first, then the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn find_binaries() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn absolute(dir: &Path) -> Result<PathBuf, EmbeddedError> {
    std::path::absolute(dir).map_err(|e| io(&format!("resolve {}", dir.display()), e))
}

/// Where the superuser's password of the cluster in `dir` is kept (readable by this
/// process's user only): beside the cluster folder, outside what the postgres user owns.
fn password_file(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".password");
    PathBuf::from(name)
}

fn generated_password() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Writes `text` to a new file only its owner can read (mode 0600).
fn write_private(path: &Path, text: &str) -> Result<(), EmbeddedError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(&format!("create {}", path.display()), e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io(&format!("write {}", path.display()), e))
}

fn prepare_dir(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<(), EmbeddedError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("create {}", dir.display()), e))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| {
            io(
                &format!("give {} to the postgres user", dir.display()),
                e.into(),
            )
        })?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io(&format!("restrict {}", dir.display()), e))
}

/// Whether the user PostgreSQL runs as can write into `dir` (every parent must let it pass).
async fn owner_can_reach(dir: &Path, owner: Option<(Uid, Gid)>) -> bool {
    let Some((uid, gid)) = owner else {
        return true;
    };
    Command::new("/bin/sh")
        .args(["-c", "test -w \"$1\" && test -x \"$1\"", "sh"])
        .arg(dir)
        .current_dir("/")
        .uid(uid.as_raw())
        .gid(gid.as_raw())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A stable folder under /var/tmp for a data folder the postgres user cannot reach.
fn fallback_dir(wanted: &Path) -> PathBuf {
    let digest = Sha256::digest(wanted.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/var/tmp/topup-pg-{}", &hex::encode(digest)[..12]))
}

fn free_port() -> Result<u16, EmbeddedError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| io("find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| io("find a free port", e))?
        .port();
    Ok(port)
}

fn check(out: &Output, what: &str) -> Result<(), EmbeddedError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(EmbeddedError::Command {
            what: what.into(),
            detail: output_text(out),
        })
    }
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if text.is_empty() {
        text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    format!("{} ({})", text, out.status)
}

fn io(what: &str, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        what: what.to_string(),
        source,
    }
}
