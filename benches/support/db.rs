//! A throw-away database for a benchmark (a file of its own, so a bench that needs only this
//! can include it alone: `#[path = "support/db.rs"]`).

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use topup::db::embedded::{Cluster, ClusterOptions};

/// A fresh database on the server in `BENCH_DATABASE_URL`, or on a private throw-away
/// cluster; dropped by [`BenchDb::drop_all`].
pub struct BenchDb {
    pub url: String,
    pub name: String,
    admin: AsyncPgConnection,
    cluster: Option<Cluster>,
}

impl BenchDb {
    pub async fn create(prefix: &str) -> BenchDb {
        let (admin_url, url_of, cluster) = match std::env::var("BENCH_DATABASE_URL") {
            Ok(url) => {
                let mut u = url::Url::parse(&url).expect("BENCH_DATABASE_URL");
                u.set_path("/DB");
                let pattern = u.to_string();
                (url, pattern, None)
            }
            Err(_) => {
                let dir = std::env::temp_dir().join(format!("{prefix}-pg-{}", std::process::id()));
                let cluster = Cluster::start(&ClusterOptions {
                    dir,
                    ephemeral: false,
                })
                .await
                .expect("private cluster");
                (cluster.url("postgres"), cluster.url("DB"), Some(cluster))
            }
        };
        let name = format!("{prefix}_{}", std::process::id());
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .expect("connect");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        BenchDb {
            url: url_of.replace("/DB", &format!("/{name}")),
            name,
            admin,
            cluster,
        }
    }

    pub async fn drop_all(mut self) {
        let _ = diesel::sql_query(format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&mut self.admin)
            .await;
        if let Some(cluster) = self.cluster {
            let _ = cluster.stop().await;
            let _ = std::fs::remove_dir_all(cluster.dir());
        }
    }
}
