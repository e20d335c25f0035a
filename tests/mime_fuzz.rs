//! The differential MIME fuzzer (SPEC section 3: "for every message the
//! upstream accepts, however malformed its MIME"). Messages generated from
//! a seed (`support::mime_gen`) are APPENDed to a real Dovecot, snapshotted
//! through the proxy, and every section form, BINARY, BINARY.SIZE,
//! BODYSTRUCTURE, ENVELOPE and a set of SEARCH keys of the snapshot folder
//! are compared byte for byte with Dovecot's answers for the live messages.
//!
//! CI runs a fixed seed; `ITM_MIME_FUZZ_MESSAGES=5000 ITM_MIME_FUZZ_SEED=7
//! cargo test --test mime_fuzz` runs a long one, and with
//! `ITM_MIME_FUZZ_DUMP=dir` writes every message that differs into `dir`.
//! Such messages are kept in `tests/fixtures/mime/` and compared on every
//! run (`messages_the_fuzzer_found_match_dovecot`).

mod support;

use imap_time_machine::imap::bodystructure;
use imap_time_machine::imap::fetch_scan::scan;
use imap_time_machine::imap::section::path_text;
use support::mime_gen::Generator;
use support::{show, without_hidden_codes, without_timing, Client, Dovecot, Proxy};

const DATE: &str = "2026-11-20";
const FOLDER: &str = "Fuzz";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The section items (without BINARY) compared for one message whose live
/// BODYSTRUCTURE is `bs`.
fn section_items(bs: &[u8]) -> Vec<String> {
    let mut items = vec![
        "BODY.PEEK[HEADER]".to_string(),
        "BODY.PEEK[TEXT]".to_string(),
        "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE CONTENT-TYPE)]".to_string(),
        "BODY.PEEK[HEADER.FIELDS.NOT (FROM SUBJECT)]".to_string(),
        "RFC822.HEADER".to_string(),
        "BODY.PEEK[1]<0.10>".to_string(),
    ];
    if let Ok(b) = bodystructure::parse(bs) {
        for n in b.numbered(200) {
            let p = path_text(&n.path);
            items.push(format!("BODY.PEEK[{p}]"));
            items.push(format!("BODY.PEEK[{p}.MIME]"));
            if n.part.is_message() {
                items.push(format!("BODY.PEEK[{p}.HEADER]"));
                items.push(format!("BODY.PEEK[{p}.TEXT]"));
                items.push(format!("BODY.PEEK[{p}.HEADER.FIELDS (SUBJECT)]"));
            }
        }
    }
    items
}

/// The parts whose BINARY and BINARY.SIZE are compared: the whole message
/// and every numbered part, containers included (Dovecot decodes every part
/// inside them).
fn binary_paths(bs: &[u8]) -> Vec<String> {
    let mut paths = vec![String::new()];
    if let Ok(b) = bodystructure::parse(bs) {
        paths.extend(b.numbered(200).iter().map(|n| path_text(&n.path)));
    }
    paths
}

struct Tally {
    compared: usize,
    differences: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, live: &[u8], snap: &[u8]) {
        self.compared += 1;
        let (a, b) = (without_timing(live), without_timing(snap));
        if a != b && self.differences.len() < 400 {
            // Where they first differ, with some context.
            let at = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let from = at.saturating_sub(80);
            let cut = |v: &[u8]| show(&v[from.min(v.len())..(at + 120).min(v.len())]);
            self.differences.push(format!(
                "{what}\n  differ at byte {at} (live {} bytes, snapshot {})\n  live: {:?}\n  snap: {:?}",
                a.len(),
                b.len(),
                cut(&a),
                cut(&b)
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_answers_match_dovecot_for_generated_hostile_mime() {
    fuzz(Dovecot::start('/')).await;
}

/// The same messages through the production-like Dovecot (acl, quota,
/// imap_zlib, special-use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_answers_match_production_like_dovecot() {
    fuzz(Dovecot::start_prod('/', &[])).await;
}

/// Messages kept from earlier runs: each once differed from Dovecot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_fuzzer_found_match_dovecot() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/mime")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    let messages: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).expect("fixture")).collect();
    assert!(messages.len() >= 10, "fixtures missing from {}", dir.display());
    differential(Dovecot::start('/'), messages, "fixtures").await;
}

async fn fuzz(d: Dovecot) {
    let count = env_or("ITM_MIME_FUZZ_MESSAGES", 300) as usize;
    let seed = env_or("ITM_MIME_FUZZ_SEED", 20261201);
    let mut generator = Generator::new(seed);
    let messages = (0..count).map(|_| generator.generate()).collect();
    differential(d, messages, &format!("seed {seed}")).await;
}

/// APPENDs `messages` to Dovecot, snapshots them through the proxy and
/// compares every answer of the snapshot folder with the live folder's.
async fn differential(d: Dovecot, messages: Vec<Vec<u8>>, label: &str) {
    let count = messages.len();
    let mut live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    assert!(show(&live.cmd("c", &format!("CREATE {FOLDER}")).await).starts_with("c OK"));
    let mut appended = 0;
    let mut refused = 0;
    let mut kept = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let r = live
            .append(
                "a",
                &format!("{FOLDER} () \"0{}-Nov-2026 10:00:00 +0000\"", 1 + i % 9),
                msg,
            )
            .await;
        if r.starts_with("a OK") {
            appended += 1;
            kept.push(msg);
        } else {
            refused += 1;
        }
    }
    // Nothing may stay \Recent: a snapshot never has it.
    live.cmd("s", &format!("SELECT {FOLDER}")).await;
    live.cmd("u", "UNSELECT").await;

    let proxy = Proxy::start(&d);
    let stats = proxy.snapshot_stats("alice", DATE).await;
    assert_eq!(stats.messages, appended as u64);
    let mut snap = Client::login_tls(proxy.tls_addr, "alice", "alice-pw").await;
    let vname = format!("\"Time Machine/{DATE}/{FOLDER}\"");
    let a = without_hidden_codes(&without_timing(&live.cmd("e", &format!("EXAMINE {FOLDER}")).await));
    let b = without_timing(&snap.cmd("e", &format!("EXAMINE {vname}")).await);
    assert_eq!(show(&a), show(&b));

    let mut t = Tally {
        compared: 0,
        differences: Vec::new(),
    };
    let mut dropped = 0;
    for uid in 1..=appended as u32 {
        let before = t.differences.len();
        let meta = format!("UID FETCH {uid} (RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[])");
        let a = live.cmd("m", &meta).await;
        let b = snap.cmd("m", &meta).await;
        t.check(&format!("UID {uid} {meta}"), &a, &b);
        let bs = scan(&a)
            .ok()
            .and_then(|f| f.get("BODYSTRUCTURE").map(<[u8]>::to_vec))
            .unwrap_or_default();
        let items = section_items(&bs);
        for chunk in items.chunks(24) {
            let cmd = format!("UID FETCH {uid} ({})", chunk.join(" "));
            let a = live.cmd("f", &cmd).await;
            let b = snap.cmd("f", &cmd).await;
            t.check(&format!("UID {uid} {cmd}"), &a, &b);
        }
        for p in binary_paths(&bs) {
            for item in [format!("BINARY.PEEK[{p}]"), format!("BINARY.SIZE[{p}]")] {
                let cmd = format!("UID FETCH {uid} ({item})");
                let b = snap.cmd("b", &cmd).await;
                match live.cmd_or_closed("b", &cmd).await {
                    Some(a) => t.check(&format!("UID {uid} {cmd}"), &a, &b),
                    None => {
                        // Dovecot drops the connection on some invalid
                        // encodings; the proxy answers NO [PARSE] instead.
                        dropped += 1;
                        t.compared += 1;
                        let text = show(&b);
                        if !text.contains("b NO [PARSE] Invalid data in MIME part") {
                            t.differences
                                .push(format!("UID {uid} {cmd}\n  live: BYE\n  snap: {text:?}"));
                        }
                        live = Client::login_plain(d.addr(), "alice", "alice-pw").await;
                        live.cmd("e", &format!("EXAMINE {FOLDER}")).await;
                    }
                }
            }
        }
        // Every message that differed becomes a file to keep as a fixture:
        // the bytes as generated (Dovecot's BODY[] shows a NUL as 0x80).
        if let (Some(dir), true) = (std::env::var_os("ITM_MIME_FUZZ_DUMP"), t.differences.len() > before) {
            let raw = kept.get(uid as usize - 1).map(|m| m.as_slice()).unwrap_or_default();
            std::fs::write(std::path::Path::new(&dir).join(format!("{uid}.eml")), raw).expect("dump");
        }
    }
    for key in [
        "SENTBEFORE 1-Jan-2002",
        "SENTSINCE 1-Jan-2020",
        "SENTON 4-Nov-2026",
        "SENTBEFORE 5-Nov-2026",
        "BODY invoice",
        "TEXT zebra",
        "BODY caf\u{e9}",
        "HEADER Content-Type multipart",
        "SUBJECT lunch",
        "FROM fuzz",
        "LARGER 2000",
        "NOT BODY quartz",
    ] {
        let cmd = if key.is_ascii() {
            format!("UID SEARCH {key}")
        } else {
            let (head, word) = key.split_once(' ').unwrap_or_default();
            format!("UID SEARCH CHARSET UTF-8 {head} {{{}+}}\r\n{word}", word.len())
        };
        let a = live.cmd("s", &cmd).await;
        let b = snap.cmd("s", &cmd).await;
        t.check(&cmd, &a, &b);
    }
    eprintln!(
        "mime fuzz: {label}, {appended} messages appended ({refused} refused), {} answers compared, {} differences, {} recorded views ({:.1} %), {} with recorded sizes, live connection dropped {dropped} times",
        t.compared,
        t.differences.len(),
        stats.views_recorded,
        100.0 * stats.views_recorded as f64 / appended.max(1) as f64,
        stats.sizes_recorded
    );
    assert!(appended > count / 2, "Dovecot refused most messages: {refused}");
    assert!(stats.views_recorded > 0, "the MIME check never asked the upstream");
    assert!(
        t.differences.is_empty(),
        "{} differences from the live server:\n{}",
        t.differences.len(),
        t.differences.join("\n")
    );
}
