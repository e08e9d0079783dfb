//! The zero-configuration start: the built binary, no DATABASE_URL, a fresh data folder.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

struct Running {
    child: Child,
    base: String,
    /// Everything printed up to the GraphiQL line: logs and the banner.
    printed: Vec<String>,
}

fn start(data_dir: &std::path::Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topup"))
        .env_remove("DATABASE_URL")
        .env("TOPUP_DATA_DIR", data_dir)
        .env("TOPUP_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start topup");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut printed = Vec::new();
    let base = loop {
        assert!(Instant::now() < deadline, "no banner within 120 s");
        let line = lines
            .next()
            .expect("topup exited before printing its banner")
            .expect("read stdout");
        printed.push(line.clone());
        if let Some(url) = line.trim().strip_prefix("GraphiQL:") {
            break url.trim().trim_end_matches("/graphql").to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running {
        child,
        base,
        printed,
    }
}

fn stop(mut running: Running) {
    let pid = nix::unistd::Pid::from_raw(running.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = running.child.wait().expect("wait");
    assert!(status.success(), "topup exited with {status}");
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    crate::support::eventually(60, "/readyz answers 200", || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

async fn gql(base: &str, query: &str, variables: serde_json::Value) -> serde_json::Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .body(json!({ "query": query, "variables": variables }).to_string())
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json")
}

fn postmaster_running(data_dir: &std::path::Path) -> bool {
    let Ok(pid_file) = std::fs::read_to_string(data_dir.join("pg/postmaster.pid")) else {
        return false;
    };
    let Some(pid) = pid_file
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test]
async fn zero_configuration_start_stop_and_restart() {
    let data_dir = std::env::temp_dir().join(format!("topup-zero-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);

    let first = start(&data_dir);
    wait_ready(&first.base).await;
    // Zero configuration runs the sandbox, and says so on every log line and in the banner;
    // its key is in a file only the owner reads, never on the screen.
    // Everything before the banner is a log line.
    let banner = first
        .printed
        .iter()
        .position(|l| l.starts_with("Topup is serving"))
        .expect("the banner");
    assert!(
        banner > 0,
        "the sandbox warning is logged: {:?}",
        first.printed
    );
    for line in &first.printed[..banner] {
        assert!(line.starts_with("[SANDBOX] "), "{line}");
    }
    assert!(
        first
            .printed
            .iter()
            .any(|l| l.starts_with("Topup is serving in SANDBOX mode")),
        "{:?}",
        first.printed
    );
    let key_file = data_dir.join("sandbox-md5-key");
    let key = std::fs::read_to_string(&key_file).expect("the sandbox key file");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        first.printed.iter().all(|l| !l.contains(key.trim())),
        "the key is never printed"
    );
    assert!(
        postmaster_running(&data_dir),
        "the private PostgreSQL runs in the data folder"
    );
    let signed_up = gql(
        &first.base,
        "mutation { register(input: {email: \"zero@example.com\", password: \"correct horse battery\"}) { user { email } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        signed_up["data"]["register"]["user"]["email"], "zero@example.com",
        "{signed_up}"
    );
    stop(first);
    assert!(
        !postmaster_running(&data_dir),
        "SIGTERM stops the private PostgreSQL too"
    );

    // The second start reuses the cluster and its data.
    let second = start(&data_dir);
    wait_ready(&second.base).await;
    let logged_in = gql(
        &second.base,
        "mutation { login(input: {email: \"zero@example.com\", password: \"correct horse battery\"}) { user { email } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        logged_in["data"]["login"]["user"]["email"], "zero@example.com",
        "{logged_in}"
    );
    stop(second);
    assert!(!postmaster_running(&data_dir));
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Run as root, the cluster belongs to the postgres user; a data folder that user cannot reach
/// (inside a folder closed to it, like /root) is replaced by one under /var/tmp.
#[tokio::test]
async fn a_private_cluster_in_a_closed_folder_lives_elsewhere() {
    use std::os::unix::fs::PermissionsExt;
    use topup::db::embedded::{Cluster, ClusterOptions};
    let closed = std::env::temp_dir().join(format!("topup-closed-{}", std::process::id()));
    std::fs::create_dir_all(&closed).expect("mkdir");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let wanted = closed.join("data").join("pg");
    let cluster = Cluster::start(&ClusterOptions {
        dir: wanted.clone(),
        ephemeral: true,
    })
    .await
    .expect("the cluster starts somewhere");
    let as_root = nix::unistd::Uid::effective().is_root();
    assert_eq!(
        cluster.relocated(),
        as_root,
        "relocated exactly when a separate user runs it"
    );
    if as_root {
        assert!(
            cluster.dir().starts_with("/var/tmp"),
            "{}",
            cluster.dir().display()
        );
    } else {
        assert_eq!(cluster.dir(), wanted.as_path());
    }
    cluster
        .ensure_database("probe")
        .await
        .expect("the cluster answers");
    // Its superuser has a generated password, kept beside the folder for this user only;
    // without it the cluster refuses even a loopback connection.
    let mut password_file = cluster.dir().as_os_str().to_owned();
    password_file.push(".password");
    let password_file = std::path::PathBuf::from(password_file);
    let mode = std::fs::metadata(&password_file)
        .expect("the password file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    use diesel_async::AsyncConnection;
    let without = diesel_async::AsyncPgConnection::establish(&format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        cluster.port()
    ))
    .await;
    assert!(
        without.is_err(),
        "a connection without the password is refused"
    );
    cluster.stop().await.expect("stop");
    let _ = std::fs::remove_file(&password_file);
    if as_root {
        std::fs::remove_dir_all(cluster.dir()).expect("remove the fallback cluster");
    }
    std::fs::remove_dir_all(&closed).expect("cleanup");
}
