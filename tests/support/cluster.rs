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

    /// A fresh namespace: a schema and a bucket prefix.
    pub fn namespace(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{}_{}", std::process::id(), n);
        self.psql(&format!("CREATE SCHEMA {name}"));
        name
    }

    /// A `[store]` section on namespace `ns` of this cluster, for a proxy
    /// whose files (and S3 secret) live in `data`.
    pub fn section(&self, data: &Path, ns: &str) -> String {
        let secret = data.join("s3-secret");
        std::fs::write(&secret, self.var("S3_SECRET")).expect("write the S3 secret");
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
            url = self.var("PG_URL"),
            endpoint = self.var("S3_ENDPOINT"),
            region = self.var("S3_REGION"),
            bucket = self.var("S3_BUCKET"),
            key = self.var("S3_KEY_ID"),
            secret = secret.display(),
        )
    }

    /// Rows of `table` in namespace `ns`.
    pub fn rows(&self, ns: &str, table: &str) -> u64 {
        self.psql(&format!("SELECT count(*) FROM {ns}.{table}"))
            .parse()
            .expect("a count")
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

/// A fresh namespace in the run's cluster: a schema and a bucket prefix.
pub fn namespace() -> String {
    cluster().namespace()
}

/// The `[store]` section of a proxy whose files live in `data`.
pub fn store_section(data: &Path) -> String {
    let d = data.display();
    match StoreKind::of_run() {
        StoreKind::Embedded => format!("[store]\npath = \"{d}/store\"\n"),
        StoreKind::Cluster => cluster_section(data, &namespace()),
    }
}

/// A cluster `[store]` section on namespace `ns` of the run's cluster
/// (several proxies given the same `ns` share one store: a fleet).
pub fn cluster_section(data: &Path, ns: &str) -> String {
    cluster().section(data, ns)
}

/// A proxy config text (support's `proxy_config_text`) with its
/// `[store]` section replaced by `section`.
pub fn with_store(text: &str, section: &str) -> String {
    let start = text.find("[store]").expect("a [store] section");
    let end = text.find("[admin]").expect("an [admin] section");
    format!("{}{section}{}", &text[..start], &text[end..])
}

/// A store of the run's kind in `data`; on the cluster, on namespace `ns`
/// (two stores on one namespace are two nodes of a fleet).
pub fn open_store(data: &Path, ns: Option<&str>) -> imap_time_machine::store::Store {
    let section = match ns {
        Some(ns) => cluster_section(data, ns),
        None => format!("[store]\npath = \"{}/store\"\n", data.display()),
    };
    store_of_section(&section).expect("open store")
}

/// The store a `[store]` section names, or why it does not open.
pub fn store_of_section(section: &str) -> Result<imap_time_machine::store::Store, String> {
    let text = format!(
        "{section}[listen]\ntls = \"127.0.0.1:0\"\n[tls]\ncert = \"certs/localhost.pem\"\nkey = \"certs/localhost-key.pem\"\n\
         [upstream]\naddress = \"127.0.0.1:1\"\nmaster_user = \"m\"\nmaster_password = \"p\"\n"
    );
    let config = imap_time_machine::config::Config::from_toml(&text, &repo_root()).map_err(|e| e.to_string())?;
    imap_time_machine::store::Store::open_config(&config.store).map_err(|e| e.to_string())
}

/// A cluster of a test's own, for tests that stop its engines' nodes
/// (the run's cluster is shared by every test); stopped when dropped.
pub struct OwnCluster {
    pub cluster: Cluster,
    _dir: tempfile::TempDir,
}

impl OwnCluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("itm-own-cluster-")
            .tempdir()
            .expect("tempdir");
        let status = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("start")
            .arg(dir.path())
            .arg(std::process::id().to_string())
            .status()
            .expect("run scripts/cluster.sh");
        assert!(status.success(), "scripts/cluster.sh start failed");
        Self {
            cluster: parse_env(dir.path()),
            _dir: dir,
        }
    }

    /// Stops or starts Garage node `n` (1-3); a start returns once it
    /// listens.
    pub fn garage_node(&self, n: u8, action: &str) {
        let status = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("garage-node")
            .arg(&self.cluster.dir)
            .arg(n.to_string())
            .arg(action)
            .status()
            .expect("run scripts/cluster.sh");
        assert!(status.success(), "garage node {n} {action} failed");
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/cluster.sh"))
            .arg("stop")
            .arg(&self.cluster.dir)
            .status();
    }
}

/// Rows of `table` in the namespace a proxy's config text names.
pub fn rows(config_text: &str, table: &str) -> u64 {
    let ns = config_text
        .split("search_path=")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a cluster config names its schema");
    cluster().rows(ns, table)
}
