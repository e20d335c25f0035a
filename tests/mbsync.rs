//! A real client: `mbsync` (isync) pulls `Time Machine/<date>/*` through
//! the proxy over TLS into a local Maildir; every message arrives
//! byte-identical to the live message (Maildir stores LF line ends, and
//! mbsync adds its `X-TUID` header) and mbsync reports no error.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::{repo_root, show, Dovecot, Proxy, FIXTURE_FOLDERS};

const DATE: &str = "2026-11-20";

/// The live messages of a folder, read directly from Dovecot, with the
/// line ends a Maildir uses.
async fn live_bodies(d: &Dovecot, folder: &str) -> Vec<Vec<u8>> {
    let live = d.messages("alice", &d.name(folder)).await.expect("EXISTS");
    // Maildir stores LF line ends.
    let mut out: Vec<Vec<u8>> = live
        .iter()
        .map(|m| String::from_utf8_lossy(m).replace("\r\n", "\n").into_bytes())
        .collect();
    out.sort();
    out
}

/// mbsync adds its own tracking header `X-TUID` to every message it
/// stores (isync's documented behaviour); everything else must be as sent.
fn without_tuid(msg: Vec<u8>) -> Vec<u8> {
    let Some(pos) = msg.windows(8).position(|w| w == b"\nX-TUID:") else {
        return msg;
    };
    let end = pos + 1 + msg[pos + 1..].iter().position(|&b| b == b'\n').unwrap_or(0);
    let mut out = msg[..pos].to_vec();
    out.extend_from_slice(&msg[end..]);
    out
}

fn maildir_messages(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                out.push(without_tuid(std::fs::read(e.path()).expect("read maildir message")));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbsync_pulls_a_snapshot_day_byte_identical() {
    let d = Dovecot::start_seeded('/');
    let proxy = Proxy::start(&d);
    proxy.snapshot("alice", DATE).await;

    let local = tempfile::tempdir().expect("tempdir");
    let maildir = local.path().join("mail");
    std::fs::create_dir_all(&maildir).expect("maildir");
    let rc = local.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount proxy\nHost localhost\nPort {port}\nUser alice\nPass alice-pw\nSSLType IMAPS\n\
             CertificateFile {ca}\n\n\
             IMAPStore far\nAccount proxy\n\n\
             MaildirStore near\nPath {maildir}/\nInbox {maildir}/INBOX\nSubFolders Verbatim\n\n\
             Channel tm\nFar :far:\nNear :near:\nPatterns \"Time Machine/{DATE}/*\"\n\
             Create Near\nSync Pull\nExpunge None\nSyncState *\n",
            port = proxy.tls_addr.port(),
            ca = repo_root().join("certs/ca.pem").display(),
            maildir = maildir.display(),
        ),
    )
    .expect("write mbsyncrc");
    let run = tokio::task::spawn_blocking(move || {
        Command::new("mbsync")
            .arg("-c")
            .arg(&rc)
            .arg("-a")
            .output()
            .expect("run mbsync (Debian package isync)")
    })
    .await
    .expect("mbsync thread");
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "mbsync failed: {stderr}");
    assert!(!stderr.to_lowercase().contains("error"), "mbsync reported: {stderr}");

    let mut synced = BTreeMap::new();
    for f in FIXTURE_FOLDERS {
        // mbsync names the local folder after the remote one.
        let local_name = format!("Time Machine/{DATE}/{f}").replace("Re&AOc-us", "Reçus");
        let mut dir = maildir.join(&local_name);
        if !dir.exists() {
            dir = maildir.join(format!("Time Machine/{DATE}/{f}"));
        }
        assert!(
            dir.exists(),
            "{} missing; have {:?}",
            dir.display(),
            std::fs::read_dir(maildir.join(format!("Time Machine/{DATE}")))
                .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        let got = maildir_messages(&dir);
        let want = live_bodies(&d, f).await;
        assert_eq!(got.len(), want.len(), "message count of {f}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(show(g), show(w), "message bytes of {f} differ");
        }
        synced.insert(f.to_string(), got.len());
    }
    assert!(synced.values().sum::<usize>() >= 13, "{synced:?}");
}
