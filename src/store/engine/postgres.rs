//! [`Records`] on PostgreSQL: a table per [`Family`] (`itm_<family>`,
//! `k bytea PRIMARY KEY, v bytea`), a [`Batch`] in one transaction, a
//! [`Lock`] as an advisory lock, so proxy nodes sharing the database
//! serialise their read-modify-writes as threads of one process do.
//!
//! The store's callers are synchronous, and some run on the proxy's async
//! runtime, where the `postgres` client (which blocks on a runtime of its
//! own) may not be used. So the connections live on worker threads of
//! their own and callers hand them work over a channel.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::{prefix_end, Batch, EngineError, Family, Held, Lock, Op, Records, Visitor};

/// Records read per round trip while visiting a prefix.
const PAGE: i64 = 1000;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the engine needs to connect.
#[derive(Clone)]
pub struct Settings {
    /// libpq-style connection string (`host=… port=… user=… dbname=…`)
    /// or URL, without the password.
    pub url: String,
    pub password: Option<String>,
    /// Connections (worker threads).
    pub connections: usize,
    /// TLS to the server, when the connection string says
    /// `sslmode=require` (rustls, its certificate verified).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("connections", &self.connections)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// One worker's connection, reconnected when the server closed it.
struct Connection {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    client: Option<postgres::Client>,
}

impl Connection {
    fn client(&mut self) -> Result<&mut postgres::Client, EngineError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let client = match &self.tls {
                Some(tls) => self.config.connect(tls.clone()),
                None => self.config.connect(postgres::NoTls),
            };
            self.client = Some(client.map_err(pg)?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| EngineError::Postgres("no connection".into()))
    }
}

fn pg(e: postgres::Error) -> EngineError {
    // The driver's message names the server's error (and its SQLSTATE);
    // it never includes the password.
    EngineError::Postgres(match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The cause says what failed (a TLS handshake: which
            // certificate check).
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    })
}

pub struct Postgres {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// One per [`Lock`]: a process holds at most one worker per lock, so
    /// waiting lockers never take every connection.
    requests: Mutex<()>,
    deleted: Mutex<()>,
    claims: Mutex<()>,
}

struct Guard<'a> {
    _local: std::sync::MutexGuard<'a, ()>,
    /// Dropping it lets the worker holding the advisory lock release it.
    _release: mpsc::Sender<()>,
}
impl Held for Guard<'_> {}

fn table(family: Family) -> String {
    format!("itm_{}", family.name())
}

impl Postgres {
    /// Connects (checking the settings at once) and creates the tables
    /// that are missing.
    pub fn connect(settings: &Settings) -> Result<Self, EngineError> {
        let mut config: postgres::Config = settings
            .url
            .parse()
            .map_err(|e: postgres::Error| EngineError::Postgres(format!("the connection string: {e}")))?;
        if let Some(p) = &settings.password {
            config.password(p);
        }
        config.application_name("imap-time-machine");
        let tls = match (config.get_ssl_mode(), &settings.tls) {
            (postgres::config::SslMode::Require, Some(tls)) => {
                Some(tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone()))
            }
            (postgres::config::SslMode::Require, None) => {
                return Err(EngineError::Postgres(
                    "sslmode=require, but no TLS settings were given".into(),
                ))
            }
            // `prefer` (the default) and `disable`: plain, as libpq does
            // where it has no TLS; ask for it with sslmode=require.
            _ => None,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        // More than the locks (one worker each at most), so held locks
        // never starve the rest.
        for i in 0..settings.connections.max(5) {
            let rx = rx.clone();
            let mut conn = Connection {
                config: config.clone(),
                tls: tls.clone(),
                client: None,
            };
            std::thread::Builder::new()
                .name(format!("store-pg-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => return,
                    }
                })?;
        }
        let engine = Self {
            jobs: Mutex::new(tx),
            requests: Mutex::new(()),
            deleted: Mutex::new(()),
            claims: Mutex::new(()),
        };
        engine.run(|c| {
            let mut sql = String::new();
            for f in Family::ALL {
                sql.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {} (k bytea PRIMARY KEY, v bytea NOT NULL);",
                    table(f)
                ));
            }
            // Two nodes starting at once may both create a table: the
            // loser's error is harmless, and the retry sees the table.
            match c.batch_execute(&sql) {
                Ok(()) => Ok(()),
                Err(_) => c.batch_execute(&sql).map_err(pg),
            }
        })?;
        Ok(engine)
    }

    /// Runs `f` on a worker's connection and waits for its answer.
    /// A connection the server closed (restarted, failed over) is opened
    /// again and `f` run once more: every job is a read or one whole
    /// transaction of puts and deletes, so running it twice is harmless.
    fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&mut postgres::Client) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let mut out = conn.client().and_then(&f);
            if out.is_err() && conn.client.as_ref().is_none_or(|c| c.is_closed()) {
                out = conn.client().and_then(&f);
            }
            let _ = tx.send(out);
        });
        self.jobs
            .lock()
            .map_err(|_| EngineError::Postgres("job queue poisoned".into()))?
            .send(job)
            .map_err(|_| EngineError::Postgres("the connection workers are gone".into()))?;
        rx.recv()
            .map_err(|_| EngineError::Postgres("a connection worker stopped".into()))?
    }
}

/// Applies `batch` inside `tx`: runs of puts of one family go as one
/// statement (`unnest` of two arrays), since a commit puts thousands.
fn apply(tx: &mut postgres::Transaction<'_>, batch: &Batch) -> Result<(), EngineError> {
    let mut ops = batch.ops.iter().peekable();
    while let Some(op) = ops.next() {
        match op {
            Op::Put(f, k, v) => {
                // Later puts of a key win, as in RocksDB; one INSERT may not
                // touch a row twice.
                let mut run: std::collections::BTreeMap<&[u8], &[u8]> = std::collections::BTreeMap::new();
                run.insert(k, v);
                while let Some(Op::Put(g, _, _)) = ops.peek() {
                    if g != f {
                        break;
                    }
                    if let Some(Op::Put(_, k, v)) = ops.next() {
                        run.insert(k, v);
                    }
                }
                let (keys, values): (Vec<&[u8]>, Vec<&[u8]>) = run.into_iter().unzip();
                tx.execute(
                    &format!(
                        "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                         ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                        table(*f)
                    ),
                    &[&keys, &values],
                )
                .map_err(pg)?;
            }
            Op::Delete(f, k) => {
                tx.execute(&format!("DELETE FROM {} WHERE k = $1", table(*f)), &[k])
                    .map_err(pg)?;
            }
            Op::DeletePrefix(f, p) => {
                match prefix_end(p) {
                    Some(end) => tx.execute(
                        &format!("DELETE FROM {} WHERE k >= $1 AND k < $2", table(*f)),
                        &[p, &end],
                    ),
                    None => tx.execute(&format!("DELETE FROM {} WHERE k >= $1", table(*f)), &[p]),
                }
                .map_err(pg)?;
            }
        }
    }
    Ok(())
}

impl Records for Postgres {
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_vec();
        self.run(move |c| {
            let row = c
                .query_opt(&format!("SELECT v FROM {} WHERE k = $1", table(family)), &[&key])
                .map_err(pg)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn get_many(&self, family: Family, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = keys.to_vec();
        let rows = self.run(move |c| {
            c.query(
                &format!("SELECT k, v FROM {} WHERE k = ANY($1)", table(family)),
                &[&wanted],
            )
            .map_err(pg)
        })?;
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    fn visit(&self, family: Family, prefix: &[u8], each: &mut Visitor<'_>) -> Result<(), EngineError> {
        let end = prefix_end(prefix);
        let mut from = prefix.to_vec();
        let mut first = true;
        loop {
            let (start, end, inclusive) = (from.clone(), end.clone(), first);
            let page: Vec<(Vec<u8>, Vec<u8>)> = self.run(move |c| {
                let t = table(family);
                let op = if inclusive { ">=" } else { ">" };
                let rows = match &end {
                    Some(end) => c.query(
                        &format!("SELECT k, v FROM {t} WHERE k {op} $1 AND k < $2 ORDER BY k LIMIT $3"),
                        &[&start, end, &PAGE],
                    ),
                    None => c.query(
                        &format!("SELECT k, v FROM {t} WHERE k {op} $1 ORDER BY k LIMIT $2"),
                        &[&start, &PAGE],
                    ),
                }
                .map_err(pg)?;
                Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
            })?;
            first = false;
            let full = page.len() as i64 == PAGE;
            for (k, v) in &page {
                if each(k, v).is_break() {
                    return Ok(());
                }
            }
            match page.into_iter().last() {
                Some((k, _)) if full => from = k,
                _ => return Ok(()),
            }
        }
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.run(move |c| {
            let mut tx = c.transaction().map_err(pg)?;
            if !durable {
                // Lost on a crash of the server at most; what is not durable
                // here is written again (a body's record, a login time).
                tx.batch_execute("SET LOCAL synchronous_commit = off").map_err(pg)?;
            }
            apply(&mut tx, &batch)?;
            tx.commit().map_err(pg)
        })
    }

    fn lock(&self, lock: Lock) -> Result<Box<dyn Held + '_>, EngineError> {
        let local = match lock {
            Lock::Requests => &self.requests,
            Lock::Deleted => &self.deleted,
            Lock::Claims => &self.claims,
        }
        .lock()
        .map_err(|_| EngineError::Postgres(format!("{lock:?} lock poisoned")))?;
        let (taken_tx, taken_rx) = mpsc::sync_channel::<Result<(), EngineError>>(1);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let id = lock.id();
        let job: Job = Box::new(move |conn| {
            let client = match conn.client() {
                Ok(c) => c,
                Err(e) => {
                    let _ = taken_tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = client.execute("SELECT pg_advisory_lock($1)", &[&id]) {
                let _ = taken_tx.send(Err(pg(e)));
                return;
            }
            let _ = taken_tx.send(Ok(()));
            // Held until the guard is dropped (its sender goes).
            let _ = release_rx.recv();
            if client.execute("SELECT pg_advisory_unlock($1)", &[&id]).is_err() {
                // The session is broken: closing it releases the lock.
                conn.client = None;
            }
        });
        self.jobs
            .lock()
            .map_err(|_| EngineError::Postgres("job queue poisoned".into()))?
            .send(job)
            .map_err(|_| EngineError::Postgres("the connection workers are gone".into()))?;
        taken_rx
            .recv()
            .map_err(|_| EngineError::Postgres("a connection worker stopped".into()))??;
        Ok(Box::new(Guard {
            _local: local,
            _release: release_tx,
        }))
    }

    fn compact(&self) -> Result<(), EngineError> {
        // Autovacuum gives the space of deleted rows back to the tables.
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn size(&self) -> Result<u64, EngineError> {
        self.run(|c| {
            let row = c
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind = 'r' AND c.relname LIKE 'itm\\_%' AND n.nspname = current_schema()",
                    &[],
                )
                .map_err(pg)?;
            Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
        })
    }
}
