//! The binary: config validation errors name their key, and `serve` logs
//! sessions without ever writing a password or a message body.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_ports, proxy_config_text, repo_root, show, Client, Dovecot};

const BIN: &str = env!("CARGO_BIN_EXE_imap-time-machine");

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let root = repo_root();
    let text = text.replace("\"certs/", &format!("\"{}/certs/", root.display()));
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn check_config_accepts_the_repository_config() {
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(repo_root().join("config.toml"))
        .output()
        .expect("run binary");
    assert!(out.status.success(), "{}", show(&out.stderr));
    assert!(show(&out.stdout).ends_with("config.toml: OK\n"));
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("[snapshots]\nat = \"25:99\"\n", "snapshots.at"),
        ("[limits]\nmax_line_length = 10\n", "limits.max_line_length"),
        ("[upstream2]\nx = 1\n", "upstream2"),
    ];
    for (extra, key) in cases {
        let base = proxy_config_text("127.0.0.1:1".parse().expect("addr"));
        let path = write_config(dir.path(), &format!("{base}{extra}"));
        // -c after the subcommand works too (global option).
        let out = Command::new(BIN)
            .arg("check-config")
            .arg("-c")
            .arg(&path)
            .output()
            .expect("run");
        assert!(!out.status.success());
        let err = show(&out.stderr);
        assert!(err.contains(key), "{key}: {err}");
    }
    let out = Command::new(BIN)
        .args(["-c", "/nonexistent/itm.toml", "serve"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        show(&out.stderr).contains("/nonexistent/itm.toml"),
        "{}",
        show(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_sessions_but_never_passwords_or_bodies() {
    let d = Dovecot::start_seeded('/');
    let dir = tempfile::tempdir().expect("tempdir");
    let [tls_port, plain_port] = free_ports::<2>();
    let text = proxy_config_text(d.addr())
        .replace(
            "starttls = \"127.0.0.1:0\"",
            &format!("starttls = \"127.0.0.1:{plain_port}\""),
        )
        .replace("\ntls = \"127.0.0.1:0\"", &format!("\ntls = \"127.0.0.1:{tls_port}\""))
        .replace("level = \"warn\"", "level = \"trace\"");
    let path = write_config(dir.path(), &text);
    let mut child = Command::new(BIN)
        .args(["serve", "-c"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start serve");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut up = false;
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !up {
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        panic!("serve did not listen: {}", show(&out.stderr));
    }
    let mut c = Client::login_tls(addr, "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    let r = show(&c.cmd("f", "FETCH 1 BODY.PEEK[]").await);
    assert!(r.contains("usual place"), "{r}");
    c.cmd("z", "LOGOUT").await;
    c.read_to_close().await;
    // A failed login with another password, via AUTHENTICATE too.
    let mut c = Client::tls(addr).await;
    c.cmd("a", "LOGIN alice Sekr1t-Wrong").await;
    c.cmd("b", "AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldC10d28=").await; // \0alice\0secret-two
    drop(c);

    // SIGTERM: a clean shutdown.
    let status = Command::new("kill").arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let log = show(&out.stderr);
    assert!(log.contains("logged in") && log.contains("user=\"alice\""), "{log}");
    assert!(log.contains("shutting down"), "{log}");
    for secret in [
        "alice-pw",
        "Sekr1t-Wrong",
        "secret-two",
        "AGFsaWNlAHNlY3JldC10d28",
        "usual place",
    ] {
        assert!(!log.contains(secret), "log leaks {secret}");
    }
}
