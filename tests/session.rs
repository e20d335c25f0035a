//! Logging in through the proxy (implicit TLS, STARTTLS, LOGINDISABLED,
//! AUTHENTICATE PLAIN), big APPENDs, IDLE, and the routing seam.

mod support;

use base64::Engine;
use imap_time_machine::config::UpstreamTls;
use support::{repo_root, show, Client, Dovecot, Proxy};

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_login_and_commands() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::tls(p.tls_addr).await;
    let g = show(&c.greeting);
    assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1"), "{g}");
    assert!(
        g.contains("AUTH=PLAIN") && !g.contains("STARTTLS") && !g.contains("LOGINDISABLED"),
        "{g}"
    );
    let r = c.cmd("a", "LOGIN alice alice-pw").await;
    assert!(show(&r).starts_with("a OK [CAPABILITY IMAP4rev1"), "{}", show(&r));
    let r = c.cmd("b", "SELECT INBOX").await;
    assert!(show(&r).contains("* 4 EXISTS"), "{}", show(&r));
    let r = c.cmd("z", "LOGOUT").await;
    assert!(show(&r).starts_with("* BYE"), "{}", show(&r));
    assert!(c.read_to_close().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_learns_the_real_client_address() {
    let d = Dovecot::start_seeded_dovecot('/');
    let p = Proxy::start(&d);
    let c = Client::login_tls(p.tls_addr, "bob", "bob-pw").await;
    let port = c.local_addr.port();
    // Logins: the seeder's, then the proxy's.
    let log = d.wait_for_log(|l| l.matches("Login: user=<bob>").count() >= 2).await;
    let login = log
        .lines()
        .rfind(|l| l.contains("Login: user=<bob>"))
        .expect("dovecot logged bob's login (after the seeder's)");
    assert!(login.contains(&format!("rport={port},")), "{login}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_port_requires_starttls_before_login() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::plain(p.plain_addr).await;
    let g = show(&c.greeting);
    assert!(
        g.contains("STARTTLS") && g.contains("LOGINDISABLED") && !g.contains("AUTH=PLAIN"),
        "{g}"
    );
    let r = show(&c.cmd("a", "LOGIN alice alice-pw").await);
    assert!(r.starts_with("a NO [PRIVACYREQUIRED]"), "{r}");
    let r = show(&c.cmd("b", "AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXB3").await);
    assert!(r.starts_with("b NO [PRIVACYREQUIRED]"), "{r}");
    c.starttls().await;
    let r = show(&c.cmd("c", "CAPABILITY").await);
    assert!(
        r.contains("AUTH=PLAIN") && !r.contains("LOGINDISABLED") && !r.contains("STARTTLS"),
        "{r}"
    );
    let r = show(&c.cmd("d", "LOGIN alice alice-pw").await);
    assert!(r.starts_with("d OK"), "{r}");
    let r = show(&c.cmd("e", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 4)"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pipelined_before_starttls_are_discarded() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::plain(p.plain_addr).await;
    // An injected command after STARTTLS, in clear text, must not run.
    c.send(b"st STARTTLS\r\nx CAPABILITY\r\n").await;
    let r = c.read_line().await;
    assert_eq!(show(&r), "st OK Begin TLS negotiation now\r\n");
    // The handshake would fail if the proxy had answered `x` in clear text.
    c.finish_starttls().await;
    let r = show(&c.cmd("n", "NOOP").await);
    assert_eq!(r, "n OK NOOP completed.\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_plain_with_and_without_initial_response() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(
        &c.cmd("a", &format!("AUTHENTICATE PLAIN {}", b64(b"\0alice\0alice-pw")))
            .await,
    );
    assert!(r.starts_with("a OK [CAPABILITY"), "{r}");

    let mut c = Client::tls(p.tls_addr).await;
    c.send(b"b AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(c.read_line().await, b"+ \r\n");
    c.send(format!("{}\r\n", b64(b"bob\0bob\0bob-pw")).as_bytes()).await;
    let r = show(&c.until_tagged("b").await);
    assert!(r.starts_with("b OK"), "{r}");
    let r = show(&c.cmd("c", "SELECT INBOX").await);
    assert!(r.contains("* 1 EXISTS"), "bob sees his own INBOX: {r}");

    let mut c = Client::tls(p.tls_addr).await;
    c.send(b"d AUTHENTICATE PLAIN\r\n").await;
    c.read_line().await;
    c.send(b"*\r\n").await;
    let r = show(&c.until_tagged("d").await);
    assert!(r.starts_with("d BAD Authentication cancelled"), "{r}");
    // Acting as another user is not allowed.
    let r = show(
        &c.cmd("e", &format!("AUTHENTICATE PLAIN {}", b64(b"bob\0alice\0alice-pw")))
            .await,
    );
    assert!(r.starts_with("e NO [AUTHORIZATIONFAILED]"), "{r}");
    let r = show(&c.cmd("f", "AUTHENTICATE CRAM-MD5").await);
    assert!(r.starts_with("f NO"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_literals_and_id_before_login() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("i", "ID (\"name\" \"test\")").await);
    assert!(r.starts_with("* ID (\"name\" \"imap-time-machine\""), "{r}");
    c.send(b"a LOGIN {5}\r\n").await;
    assert!(c.read_line().await.starts_with(b"+"));
    c.send(b"alice {8+}\r\nalice-pw\r\n").await;
    let r = show(&c.until_tagged("a").await);
    assert!(r.starts_with("a OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_of_20_mb_lands_byte_identical() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut message = b"From: big@example.org\r\nTo: alice@example.org\r\nSubject: 20 MB\r\n\r\n".to_vec();
    let mut i = 0u64;
    while message.len() < 20 * 1024 * 1024 {
        message.extend_from_slice(format!("line {i:010} of a big message with some text in it\r\n").as_bytes());
        i += 1;
    }
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.send(format!("a APPEND Archive (\\Seen) {{{}}}\r\n", message.len()).as_bytes())
        .await;
    let plus = c.read_line().await;
    assert!(plus.starts_with(b"+"), "{}", show(&plus));
    c.send(&message).await;
    c.send(b"\r\n").await;
    let r = show(&c.until_tagged("a").await);
    assert!(r.starts_with("a OK [APPENDUID "), "{r}");
    let uid: u32 = r
        .split(' ')
        .nth(4)
        .and_then(|u| u.trim_end_matches(']').parse().ok())
        .expect("uid");

    // Checked on Dovecot directly, not through the proxy.
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    direct.cmd("s", "EXAMINE Archive").await;
    let r = direct.cmd("f", &format!("UID FETCH {uid} BODY.PEEK[]")).await;
    let start = r.windows(3).position(|w| w == b"}\r\n").expect("literal") + 3;
    assert_eq!(r[start..start + message.len()].len(), message.len());
    assert!(r[start..start + message.len()] == message[..], "bytes differ");
    // Also a non-synchronising literal (LITERAL+) through the streaming path.
    let small = b"Subject: plus\r\n\r\nbody\r\n";
    let r = c.append("b", "Archive", small).await;
    assert!(r.starts_with("b OK [APPENDUID"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reports_a_message_appended_directly() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.cmd("s", "SELECT INBOX").await);
    assert!(r.contains("* 4 EXISTS"), "{r}");
    c.send(b"i IDLE\r\n").await;
    let r = c.read_line().await;
    assert!(r.starts_with(b"+ "), "{}", show(&r));

    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let msg = b"Subject: hello during IDLE\r\n\r\nhi\r\n";
    let r = direct.append("a", "INBOX", msg).await;
    assert!(r.starts_with("a OK"), "{r}");

    loop {
        let line = show(&c.read_line().await);
        if line == "* 5 EXISTS\r\n" {
            break;
        }
        assert!(line.starts_with("* "), "unexpected {line}");
    }
    c.send(b"DONE\r\n").await;
    let r = show(&c.until_tagged("i").await);
    assert!(r.contains("i OK"), "{r}");
    let r = show(&c.cmd("n", "NOOP").await);
    assert!(r.ends_with("n OK NOOP completed.\r\n") || r.contains("n OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_virtual_tree_is_answered_by_the_proxy_not_the_upstream() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    // A real folder that collides with the virtual root.
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = show(&direct.cmd("c", "CREATE \"Time Machine/real\"").await);
    assert!(r.starts_with("c OK"), "{r}");

    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.cmd("a", "SELECT \"Time Machine/real\"").await);
    assert_eq!(r, "a NO [NONEXISTENT] No such Time Machine folder\r\n");
    let r = show(&c.cmd("b", "CREATE \"Time Machine/new\"").await);
    assert!(r.starts_with("b NO [CANNOT] Time Machine folders are read-only"), "{r}");
    let r = show(&c.cmd("b2", "DELETE \"Time Machine/real\"").await);
    assert!(
        r.starts_with("b2 NO [CANNOT] Time Machine folders are read-only"),
        "{r}"
    );
    let r = show(&c.cmd("c", "SUBSCRIBE \"Time Machine\"").await);
    assert_eq!(r, "c OK Subscribe completed.\r\n");
    // APPEND into the tree is refused before the message is sent.
    c.send(b"d APPEND \"Time Machine/real\" {10}\r\n").await;
    let r = show(&c.read_line().await);
    assert!(r.starts_with("d NO [CANNOT] Time Machine folders are read-only"), "{r}");
    // With LITERAL+ the message comes anyway: read and dropped.
    let r = c.append("d2", "\"Time Machine/real\"", b"0123456789").await;
    assert!(r.starts_with("d2 NO [CANNOT]"), "{r}");
    // Real folders next to it still work.
    let r = show(&c.cmd("e", "SELECT \"Time Machines\"").await);
    assert!(
        r.starts_with("e NO"),
        "a real (missing) folder is the upstream's answer: {r}"
    );
    let r = show(&c.cmd("f", "SELECT Work").await);
    assert!(r.contains("f OK [READ-WRITE]"), "{r}");

    // The colliding real folders are hidden from LIST and LSUB (the tree
    // owns the name); the others are listed as Dovecot lists them.
    direct.cmd("s", "SUBSCRIBE \"Time Machine/real\"").await;
    for cmd in ["LIST \"\" \"*\"", "LSUB \"\" \"*\"", "LIST \"\" \"Time%\""] {
        let r = show(&c.cmd("g", cmd).await);
        // Only the proxy's own root is listed, never the real folder.
        assert!(!r.contains("Time Machine/real"), "{cmd}: {r}");
        let tree_lines = r.lines().filter(|l| l.contains("Time Machine")).count();
        assert!(
            tree_lines >= 1 && r.lines().all(|l| !l.contains("Time Machine/real")),
            "{cmd}: {r}"
        );
        assert!(r.contains("\\Noselect"), "{cmd}: {r}");
        let live = show(&direct.cmd("g", cmd).await);
        assert!(live.contains("Time Machine"), "{cmd}: {live}");
        assert!(r.contains("Work") || cmd.contains("Time%"), "{r}");
    }
    // Nothing reached Dovecot.
    let r = show(&direct.cmd("l", "LIST \"\" \"Time Machine/*\"").await);
    assert!(
        r.contains("Time Machine/real") && !r.contains("Time Machine/new"),
        "{r}"
    );
    let r = show(&direct.cmd("s", "STATUS \"Time Machine/real\" (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 0)"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_over_starttls_and_implicit_tls() {
    let (d, imaps) = Dovecot::start_tls_dovecot('/');
    d.seed(&[]);
    let with = |mode: UpstreamTls, port: u16, ca: bool| {
        Proxy::start_with(([127, 0, 0, 1], port).into(), move |c| {
            c.upstream.tls = mode;
            c.upstream.server_name = Some("localhost".into());
            c.upstream.ca = ca.then(|| repo_root().join("certs/ca.pem"));
        })
    };
    for (mode, port) in [(UpstreamTls::Starttls, d.port), (UpstreamTls::Implicit, imaps)] {
        let p = with(mode, port, true);
        let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
        let r = show(&c.cmd("s", "STATUS INBOX (MESSAGES)").await);
        assert!(r.contains("(MESSAGES 4)"), "{mode:?}: {r}");
    }
    // An upstream certificate the proxy does not trust: no login.
    let p = with(UpstreamTls::Implicit, imaps, false);
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("a", "LOGIN alice alice-pw").await);
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
    // TLS is really on the wire: Dovecot logged TLS logins.
    d.wait_for_log(|log| log.lines().any(|l| l.contains("user=<alice>") && l.contains("TLS")))
        .await;
}
