//! The monitoring endpoint (`metrics.listen`, SPEC section 9): `GET
//! /metrics` in the Prometheus text format, `GET /health` 200 or 503 with
//! one line per check. Plain HTTP/1.1, one request per connection; the
//! request head is parsed by `httparse` (hyper's parser).

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::services::Services;

#[derive(Debug, Error)]
#[error("config key `metrics.listen`: cannot listen on {address}: {source}")]
pub struct MonitorError {
    address: String,
    source: std::io::Error,
}

/// Longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// A client that sends nothing for this long is dropped.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// Binds `metrics.listen`; `None` when it is empty (off).
pub async fn bind(services: &Services) -> Result<Option<TcpListener>, MonitorError> {
    let address = services.config.get().metrics.listen.clone();
    if address.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| MonitorError { address, source })?;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics and health listening");
    }
    Ok(Some(listener))
}

/// Serves requests until the task is dropped.
pub async fn run(listener: TcpListener, services: Arc<Services>, listening: Arc<dyn Fn() -> bool + Send + Sync>) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let services = services.clone();
        let listening = listening.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(conn, &services, &*listening).await {
                debug!(error = %e, "monitoring request failed");
            }
        });
    }
}

async fn serve_one(
    mut conn: TcpStream,
    services: &Services,
    listening: &(dyn Fn() -> bool + Send + Sync),
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let (method, path) = loop {
        let mut chunk = [0u8; 1024];
        let n = match tokio::time::timeout(READ_LIMIT, conn.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or_default().to_string(),
                    req.path.unwrap_or_default().to_string(),
                );
            }
            Ok(httparse::Status::Partial) if head.len() <= MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return respond(
                    &mut conn,
                    "431 Request Header Fields Too Large",
                    "text/plain",
                    "too long\n",
                )
                .await;
            }
            Err(e) => {
                return respond(&mut conn, "400 Bad Request", "text/plain", &format!("{e}\n")).await;
            }
        }
    };
    if method != "GET" {
        return respond(&mut conn, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    match path.split('?').next().unwrap_or_default() {
        "/metrics" => {
            let text = metrics_text(services).await;
            respond(&mut conn, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &text).await
        }
        "/health" => {
            let (ok, report) = health(services, listening()).await;
            let status = if ok { "200 OK" } else { "503 Service Unavailable" };
            respond(&mut conn, status, "text/plain; charset=utf-8", &report).await
        }
        _ => respond(&mut conn, "404 Not Found", "text/plain", "try /metrics or /health\n").await,
    }
}

async fn respond(conn: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

/// Reads the gauges that describe the store, then renders every metric.
async fn metrics_text(services: &Services) -> String {
    let store = services.store.clone();
    let per_user = services.config.get().metrics.per_user;
    let read = tokio::task::spawn_blocking(move || {
        let m = crate::metrics::get();
        let _ = probe(&store);
        m.store_bytes
            .set(i64::try_from(store.size_on_disk()).unwrap_or(i64::MAX));
        if let Ok(requests) = store.requests() {
            m.restore_requests.reset();
            for state in crate::store::RequestState::ALL {
                let n = requests.iter().filter(|r| r.state == state).count();
                m.restore_requests
                    .with_label_values(&[state.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let (Ok(snapshots), Ok(users)) = (store.snapshots(None), store.known_users()) {
            let mut newest = std::collections::BTreeMap::<String, i64>::new();
            for s in snapshots {
                let t = newest.entry(s.user).or_insert(s.taken_at);
                *t = (*t).max(s.taken_at);
            }
            let without = users.iter().filter(|u| !newest.contains_key(*u)).count();
            m.users_without_snapshot.set(i64::try_from(without).unwrap_or(i64::MAX));
            m.last_success.reset();
            if per_user {
                for (user, t) in newest {
                    m.last_success.with_label_values(&[user.as_str()]).set(t);
                }
            }
        }
    })
    .await;
    if read.is_err() {
        warn!("reading the store for the metrics failed");
    }
    crate::metrics::get().render()
}

/// A probe write to the store; `store_write_failing` follows its result.
fn probe(store: &crate::store::Store) -> Result<(), String> {
    let r = store.probe().map_err(|e| e.to_string());
    crate::metrics::get().store_write_failing.set(i64::from(r.is_err()));
    r
}

/// Every check, and whether all passed.
async fn health(services: &Services, listening: bool) -> (bool, String) {
    let mut ok = true;
    let mut report = String::new();
    let mut line = |name: &str, result: Result<String, String>| match result {
        Ok(text) => report.push_str(&format!("{name}: ok{text}\n")),
        Err(text) => {
            ok = false;
            report.push_str(&format!("{name}: FAILED: {text}\n"));
        }
    };
    line(
        "listeners",
        if listening {
            Ok(String::new())
        } else {
            Err("not accepting connections (shutting down)".into())
        },
    );
    let store = services.store.clone();
    let probed = tokio::task::spawn_blocking(move || probe(&store))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    line("store", probed.map(|()| String::new()));
    let upstream = services.config.get().upstream.address.clone();
    line(
        "upstream",
        services
            .connector
            .connect()
            .await
            .map(|_| format!(" ({upstream})"))
            .map_err(|e| e.to_string()),
    );
    (ok, report)
}
