//! Bad input and limits (SPEC section 8): each gets a clear NO/BAD/BYE, and
//! afterwards a new session still works.

mod support;

use std::net::SocketAddr;

use support::{free_port, show, Client, Dovecot, Proxy};

/// A fresh session through the proxy logs in and reads mail.
async fn still_works(p: &Proxy) {
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.cmd("chk", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 4)"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_command_line_gets_bye() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.max_line_length = 4096);
    for logged_in in [false, true] {
        let mut c = if logged_in {
            Client::login_tls(p.tls_addr, "alice", "alice-pw").await
        } else {
            Client::tls(p.tls_addr).await
        };
        let mut line = b"a SEARCH SUBJECT \"".to_vec();
        line.resize(10_000, b'x');
        line.extend_from_slice(b"\"\r\n");
        c.send(&line).await;
        let r = show(&c.read_to_close().await);
        assert_eq!(
            r, "* BYE Command line too long (limit 4096 bytes)\r\n",
            "logged in: {logged_in}"
        );
    }
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_literals_are_refused() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| {
        c.limits.max_literal_size = 4096;
        c.limits.max_message_size = 100_000;
    });
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    // A synchronising literal over the limit: refused, the session goes on.
    c.send(b"a SEARCH TEXT {5000}\r\n").await;
    assert_eq!(
        show(&c.read_line().await),
        "a NO [TOOBIG] Literal too large (limit 4096 bytes)\r\n"
    );
    c.send(b"b APPEND INBOX {100001}\r\n").await;
    assert_eq!(
        show(&c.read_line().await),
        "b NO [TOOBIG] Message too large (limit 100000 bytes)\r\n"
    );
    let r = show(&c.cmd("c", "NOOP").await);
    assert!(r.starts_with("c OK"), "{r}");
    // A non-synchronising one is already on its way: BAD, then BYE.
    c.send(b"d SEARCH TEXT {5000+}\r\n").await;
    let r = show(&c.read_to_close().await);
    assert_eq!(
        r,
        "d BAD [TOOBIG] Literal too large (limit 4096 bytes)\r\n* BYE Cannot skip a non-synchronising literal\r\n"
    );
    // Nothing was appended.
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = show(&direct.cmd("s", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 4)"), "{r}");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_wrong_state_commands_before_login() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.max_bad_commands = 3);
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("a", "SELECT INBOX").await);
    assert_eq!(r, "a BAD Command not allowed before login\r\n");
    c.send(b"\"oops\r\n").await;
    assert_eq!(
        show(&c.read_line().await),
        "* BAD Malformed command: expected a tag and a command name\r\n"
    );
    let r = show(&c.cmd("b", "LOGIN onlyone").await);
    assert_eq!(r, "b BAD Malformed or unknown command\r\n");
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE Too many invalid commands\r\n");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::tls(p.tls_addr).await;
    for tag in ["a", "b"] {
        let r = show(&c.cmd(tag, "LOGIN alice wrong").await);
        assert!(r.starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED]")), "{r}");
    }
    let r = show(&c.cmd("c", "LOGIN nosuchuser wrong").await);
    assert!(r.starts_with("c NO [AUTHENTICATIONFAILED]"), "{r}");
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE Too many failed logins\r\n");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_login_timeouts_log_out() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| {
        c.limits.idle_timeout_secs = 1;
        c.limits.login_timeout_secs = 1;
    });
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE Autologout: no login within the time limit\r\n");
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE Autologout; idle for too long\r\n");
    // A session that keeps talking is not logged out.
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    for i in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let r = show(&c.cmd(&format!("n{i}"), "NOOP").await);
        assert!(r.contains(&format!("n{i} OK")), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_is_refused_beyond_the_limit() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.max_connections = 3);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Client::login_tls(p.tls_addr, "alice", "alice-pw").await);
    }
    for _ in 0..5 {
        let mut extra = Client::tls(p.tls_addr).await;
        assert_eq!(
            show(&extra.greeting),
            "* BYE [UNAVAILABLE] Too many connections, try again later\r\n"
        );
        assert!(extra.read_to_close().await.is_empty());
    }
    // Held sessions keep working; a freed slot is usable again.
    let r = show(&held[0].cmd("n", "NOOP").await);
    assert!(r.contains("n OK"), "{r}");
    let mut first = held.remove(0);
    first.cmd("z", "LOGOUT").await;
    first.read_to_close().await;
    drop(first);
    // The slot is released when the session task ends; retry until then.
    let mut ok = false;
    for _ in 0..100 {
        let mut c = Client::tls(p.tls_addr).await;
        if c.greeting.starts_with(b"* OK") {
            let r = show(&c.cmd("l", "LOGIN alice alice-pw").await);
            assert!(r.starts_with("l OK"), "{r}");
            ok = true;
            break;
        }
        c.read_to_close().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ok, "a slot was freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gives_unavailable() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let p = Proxy::start_with(dead, |_| {});
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("a", "LOGIN alice alice-pw").await);
    assert_eq!(
        r,
        "a NO [UNAVAILABLE] The mail server is unavailable, try again later\r\n"
    );
    let r = show(&c.cmd("b", "NOOP").await);
    assert_eq!(r, "b OK NOOP completed.\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_session_ends_with_bye() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    d.kill_sessions();
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE [UNAVAILABLE] Connection to the mail server was lost\r\n");
    drop(d);
    // The proxy itself is fine: a new login is answered (upstream gone).
    let mut c = Client::tls(p.tls_addr).await;
    let r = show(&c.cmd("a", "LOGIN alice alice-pw").await);
    assert!(r.starts_with("a NO [UNAVAILABLE]"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_literal_appends_nothing() {
    let d = Dovecot::start_seeded_dovecot('/');
    let p = Proxy::start(&d);
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.send(b"a APPEND INBOX {1000000}\r\n").await;
    assert!(c.read_line().await.starts_with(b"+"));
    c.send(&vec![b'x'; 400_000]).await;
    drop(c);
    // The proxy drops its upstream connection in the middle of the literal:
    // wait until Dovecot reports exactly that, then check nothing landed.
    d.wait_for_log(|l| l.contains("Connection closed (While APPENDing"))
        .await;
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = show(&direct.cmd("s", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 4)"), "{r}");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rejecting_a_literal_does_not_desynchronise() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start(&d);
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    // APPEND to a missing folder with a sync literal: Dovecot refuses before
    // the literal ([TRYCREATE]); the client then sends its next command,
    // which must not be taken as literal data.
    c.send(b"a APPEND NoSuchFolder {20}\r\n").await;
    let r = show(&c.read_line().await);
    assert!(r.starts_with("a NO [TRYCREATE]"), "{r}");
    let r = show(&c.cmd("b", "NOOP").await);
    assert!(r.contains("b OK"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_upstream_ends_the_session_but_idle_does_not() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.upstream_response_timeout_secs = 2);
    // IDLE: upstream silence is expected, the session stays.
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    c.send(b"i IDLE\r\n").await;
    assert!(c.read_line().await.starts_with(b"+"));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    c.send(b"DONE\r\n").await;
    let r = show(&c.until_tagged("i").await);
    assert!(r.contains("i OK"), "{r}");
    // A quiet, logged-in session is not the upstream's fault either.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let r = show(&c.cmd("n", "NOOP").await);
    assert!(r.contains("n OK"), "{r}");
    // Now the upstream hangs (stopped, connection open): a command gets a
    // clear BYE instead of waiting forever.
    d.signal_sessions("-STOP");
    c.send(b"h NOOP\r\n").await;
    let r = show(&c.read_to_close().await);
    d.signal_sessions("-CONT");
    assert_eq!(r, "* BYE [UNAVAILABLE] The mail server is not responding\r\n");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_idling_between_the_literals_of_an_append_is_logged_out() {
    let d = Dovecot::start_seeded_dovecot('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.idle_timeout_secs = 1);
    // A MULTIAPPEND streamed to a real folder: the first message arrives,
    // then the client goes quiet before announcing the second.
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.send(b"a APPEND INBOX {5+}\r\nhello").await;
    let r = show(&c.read_to_close().await);
    assert_eq!(
        r, "* BYE Autologout; idle for too long\r\n",
        "said why, not that the server failed"
    );
    // The upstream connection was dropped mid-command: nothing landed.
    d.wait_for_log(|l| {
        l.lines()
            .any(|line| line.contains("imap(alice)") && line.contains("Connection closed ("))
    })
    .await;
    let mut direct = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let r = show(&direct.cmd("s", "STATUS INBOX (MESSAGES)").await);
    assert!(r.contains("(MESSAGES 4)"), "{r}");
    // Buffered commands too: idling inside the literals of a command the
    // proxy reads whole (here a SEARCH) is an idle client as well.
    let mut c = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    c.cmd("s", "SELECT INBOX").await;
    c.send(b"b SEARCH SUBJECT {3}\r\n").await;
    assert!(c.read_line().await.starts_with(b"+"));
    let r = show(&c.read_to_close().await);
    assert_eq!(r, "* BYE Autologout; idle for too long\r\n");
    still_works(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_upstream_frees_the_connection_slot_at_once() {
    let d = Dovecot::start_seeded('/');
    let p = Proxy::start_with(d.addr(), |c| c.limits.max_connections = 1);
    let mut a = Client::login_tls(p.tls_addr, "alice", "alice-pw").await;
    d.kill_sessions();
    let r = show(&a.read_to_close().await);
    assert_eq!(r, "* BYE [UNAVAILABLE] Connection to the mail server was lost\r\n");
    // `a` keeps its socket open: the session must still be over and its
    // slot free. The slot is released when the task ends; retry until then.
    let mut admitted = false;
    for _ in 0..100 {
        let mut b = Client::tls(p.tls_addr).await;
        if b.greeting.starts_with(b"* OK") {
            admitted = true;
            break;
        }
        b.read_to_close().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "the dead session kept the only slot");
    drop(a);
}
