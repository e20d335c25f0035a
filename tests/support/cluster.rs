//! The store the tests run on: the embedded one (default) or the cluster
//! store (`ITM_STORE=cluster`) on a real PostgreSQL and a real three-node
//! Garage (scripts/cluster.sh). One cluster serves a whole test run:
//! `ITM_CLUSTER` names its `cluster.env` (scripts/test.sh starts it), or
//! the first test of a process starts one under a temp dir, stopped when
//! the process is gone. Each proxy gets its own PostgreSQL schema and its
//! own prefix in the bucket, so tests never see each other's data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::repo_root;

/// Which store the run's proxies use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    Cluster,
}

impl StoreKind {
    /// `ITM_STORE`: `rocksdb` (default) or `cluster`.
    pub fn of_run() -> Self {
        match std::env::var("ITM_STORE").as_deref() {
            Ok("cluster") => Self::Cluster,
            Ok("rocksdb") | Ok("") | Err(_) => Self::Embedded,
            Ok(other) => panic!("ITM_STORE={other}: expected rocksdb or cluster"),
        }
    }
}

/// How to reach the run's cluster (scripts/cluster.sh's `cluster.env`).
#[derive(Debug, Clone)]
pub struct Cluster {
    pub dir: PathBuf,
    pub vars: HashMap<String, String>,
}

impl Cluster {
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{name} missing from {}/cluster.env", self.dir.display()))
    }

    /// Runs SQL as the superuser in the `postgres` database.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                self.var("PG_PORT"),
                "-U",
                "itm",
                "-d",
                "postgres",
            ])
            .args(["-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The garage CLI against node `n` (1-3).
    pub fn garage(&self, n: u8, args: &[&str]) -> std::process::Output {
        Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("garage")
            .arg(&self.dir)
            .arg(n.to_string())
            .args(args)
            .output()
            .expect("run garage")
    }
}

fn parse_env(dir: &Path) -> Cluster {
    let text = std::fs::read_to_string(dir.join("cluster.env")).expect("read cluster.env");
    let vars = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect();
    Cluster {
        dir: dir.to_path_buf(),
        vars,
    }
}

/// The run's cluster, started on first use if `ITM_CLUSTER` names none.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(env) = std::env::var("ITM_CLUSTER") {
            let path = PathBuf::from(env);
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().expect("cluster.env's directory").to_path_buf()
            };
            return parse_env(&dir);
        }
        // Kept for the whole process; the watcher stops the engines after.
        let dir = tempfile::Builder::new()
            .prefix("itm-cluster-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let status = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("start")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .status()
            .expect("run scripts/cluster.sh");
        assert!(status.success(), "scripts/cluster.sh start failed");
        parse_env(&dir)
    })
}

/// A fresh namespace in the cluster: a schema and a bucket prefix.
pub fn namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("t{}_{}", std::process::id(), n);
    cluster().psql(&format!("CREATE SCHEMA {name}"));
    name
}

/// The `[store]` section of a proxy whose files live in `data`.
pub fn store_section(data: &Path) -> String {
    let d = data.display();
    match StoreKind::of_run() {
        StoreKind::Embedded => format!("[store]\npath = \"{d}/store\"\n"),
        StoreKind::Cluster => cluster_section(data, &namespace()),
    }
}

/// A cluster `[store]` section on namespace `ns` (several proxies given
/// the same `ns` share one store: a fleet).
pub fn cluster_section(data: &Path, ns: &str) -> String {
    let c = cluster();
    let secret = data.join("s3-secret");
    std::fs::write(&secret, c.var("S3_SECRET")).expect("write the S3 secret");
    format!(
        r#"[store]
backend = "cluster"
path = "{d}/store"
[store.postgres]
url = "{url} options='-csearch_path={ns}'"
connections = 4
[store.s3]
endpoint = "{endpoint}"
region = "{region}"
bucket = "{bucket}"
access_key_id = "{key}"
secret_access_key_file = "{secret}"
prefix = "{ns}/"
cache_mb = 64
"#,
        d = data.display(),
        url = c.var("PG_URL"),
        endpoint = c.var("S3_ENDPOINT"),
        region = c.var("S3_REGION"),
        bucket = c.var("S3_BUCKET"),
        key = c.var("S3_KEY_ID"),
        secret = secret.display(),
    )
}

/// Rows of `table` in the namespace a proxy's config text names.
pub fn rows(config_text: &str, table: &str) -> u64 {
    let ns = config_text
        .split("search_path=")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a cluster config names its schema");
    cluster()
        .psql(&format!("SELECT count(*) FROM {ns}.{table}"))
        .parse()
        .expect("a count")
}
