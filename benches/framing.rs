//! Hot paths of the relay: framing a FETCH response stream, spotting
//! literals and capability lists in lines, and routing a command.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use imap_time_machine::imap::capability::filter_line;
use imap_time_machine::imap::command::CommandHead;
use imap_time_machine::imap::framing::{literal_announcement, FrameReader};
use imap_time_machine::session::commands;
use imap_time_machine::session::io::Request;
use imap_time_machine::session::state::State;
use imap_time_machine::session::tree::Tree;
use imap_time_machine::upstream::Namespace;

/// A `UID FETCH 1:* (BODY.PEEK[])` response for `n` messages of `size` bytes.
fn fetch_stream(n: usize, size: usize) -> Vec<u8> {
    let body: Vec<u8> = b"Subject: x\r\n\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', size))
        .collect();
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(format!("* {i} FETCH (UID {i} BODY[] {{{}}}\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(b")\r\n");
    }
    out.extend_from_slice(b"f OK Fetch completed.\r\n");
    out
}

fn frame_all(data: &[u8]) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let mut r = FrameReader::new(data, 1 << 20);
        let mut n = 0;
        while let Ok(Some(line)) = r.read_line().await {
            n += line.len();
            if let Some(lit) = literal_announcement(&line) {
                let mut remaining = lit.len;
                while remaining > 0 {
                    let c = r.read_literal_chunk(remaining).await.expect("chunk");
                    remaining -= c.len() as u64;
                    n += c.len();
                }
            }
        }
        n
    })
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_fetch_response");
    for size in [1_000usize, 4_000, 64_000] {
        let data = fetch_stream(2_000, size);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| frame_all(black_box(d)))
        });
    }
    g.finish();
}

fn lines(c: &mut Criterion) {
    let fetch_line = b"* 4711 FETCH (UID 9000 FLAGS (\\Seen) BODY[] {123456}\r\n";
    let plain_line = b"* 4711 FETCH (UID 9000 FLAGS (\\Seen \\Answered))\r\n";
    let caps = Bytes::from_static(b"a OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED CONDSTORE QRESYNC COMPRESS=DEFLATE MOVE] Logged in\r\n");
    c.bench_function("literal_announcement", |b| {
        b.iter(|| literal_announcement(black_box(fetch_line)))
    });
    c.bench_function("filter_line/no_capability", |b| {
        b.iter(|| filter_line(black_box(plain_line)))
    });
    c.bench_function("filter_line/capability_code", |b| {
        b.iter(|| filter_line(black_box(&caps)))
    });
}

fn routing(c: &mut Criterion) {
    let tree = Tree::new(None, None, "alice", "Time Machine", &Namespace::default());
    let state = State::new(tree, Default::default(), |_| true);
    let route = |bytes: &[u8]| {
        let head = CommandHead::parse(bytes)?;
        let req = Request::new(head.tag_str(), &head.name, bytes);
        Some(matches!(
            commands::route(&state, commands::lookup(&head.name), &req),
            commands::Destination::Upstream
        ))
    };
    let cmd = b"a17 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)\r\n";
    let copy = b"a18 UID COPY 1:5 \"Time Machine/2026-11-24/INBOX\"\r\n";
    c.bench_function("command_head", |b| b.iter(|| CommandHead::parse(black_box(cmd))));
    c.bench_function("decode_and_route/fetch", |b| b.iter(|| route(black_box(cmd))));
    c.bench_function("decode_and_route/copy", |b| b.iter(|| route(black_box(copy))));
}

criterion_group!(benches, framing, lines, routing);
criterion_main!(benches);
