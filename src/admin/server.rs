//! The socket side inside `serve`.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Reply, Request};
use crate::services::Services;
use crate::snapshot::ProgressFn;

/// Binds the socket (replacing a stale one) with mode 0600. It is bound in
/// a private directory, given its mode there and only then renamed into
/// place, so the path never shows a socket others could connect to.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let private = dir.join(format!(".admin-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("sock");
    let bound = UnixListener::bind(&staged).and_then(|listener| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    });
    let _ = std::fs::remove_dir_all(&private);
    bound
}

/// How often `serve` checks that its socket is still where the CLI looks.
const SOCKET_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The inode of what is at `path` now.
fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| m.ino())
}

/// Serves CLI requests until the task is dropped. A socket (or its
/// directory) removed behind the server's back, e.g. by a tmpfiles
/// cleaner, is bound again within [`SOCKET_CHECK`].
pub async fn run(mut listener: UnixListener, path: std::path::PathBuf, services: Arc<Services>) {
    let mut bound = inode(&path);
    let mut check = tokio::time::interval(SOCKET_CHECK);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = check.tick() => {
                if inode(&path).is_none() || inode(&path) != bound {
                    match bind(&path) {
                        Ok(l) => {
                            warn!(path = %path.display(), "the admin socket was removed; bound it again");
                            listener = l;
                            bound = inode(&path);
                        }
                        Err(e) => warn!(path = %path.display(), error = %e, "the admin socket was removed and cannot be bound again"),
                    }
                }
                continue;
            }
        };
        match accepted {
            Ok((stream, _)) => {
                let svc = services.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, svc).await {
                        warn!(error = %e, "admin connection failed");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "admin socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn write_reply(w: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

async fn handle(stream: UnixStream, svc: Arc<Services>) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    BufReader::new(rd.take(1 << 20)).read_line(&mut line).await?;
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return write_reply(
                &mut wr,
                &Reply::Error {
                    message: format!("bad request: {e}"),
                },
            )
            .await;
        }
    };
    info!(?request, "admin request");
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let progress: ProgressFn = Arc::new(move |l: &str| {
        let _ = tx.send(l.to_string());
    });
    let work = super::execute(&svc, request, progress);
    tokio::pin!(work);
    let reply = loop {
        tokio::select! {
            reply = &mut work => break reply,
            Some(line) = rx.recv() => write_reply(&mut wr, &Reply::Progress { line }).await?,
        }
    };
    while let Ok(line) = rx.try_recv() {
        write_reply(&mut wr, &Reply::Progress { line }).await?;
    }
    write_reply(&mut wr, &reply).await?;
    wr.shutdown().await
}
