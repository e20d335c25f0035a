//! Differential test of body sections: for every fixture message, each
//! section computed from the raw bytes equals Dovecot's answer for the live
//! message, byte for byte.

mod support;

use imap_time_machine::imap::fetch_scan::{scan, string_value};
use imap_time_machine::imap::section::{Section, SectionText, Structure};
use support::{show, Client, Dovecot, FIXTURE_FOLDERS};

fn spec(part: &[u32], text: Option<&SectionText>) -> String {
    let mut s: Vec<String> = part.iter().map(u32::to_string).collect();
    match text {
        None => {}
        Some(SectionText::Header) => s.push("HEADER".into()),
        Some(SectionText::Text) => s.push("TEXT".into()),
        Some(SectionText::Mime) => s.push("MIME".into()),
        Some(SectionText::HeaderFields { not, fields }) => s.push(format!(
            "HEADER.FIELDS{} ({})",
            if *not { ".NOT" } else { "" },
            fields.join(" ")
        )),
    }
    s.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_match_dovecot_for_every_fixture_part() {
    let d = Dovecot::start_seeded('/');
    let mut c = Client::login_plain(d.addr(), "alice", "alice-pw").await;
    let mut compared = 0;
    for folder in FIXTURE_FOLDERS {
        c.cmd("e", &format!("EXAMINE \"{folder}\"")).await;
        let all = c.cmd("a", "UID FETCH 1:* (UID BODY.PEEK[])").await;
        let mut rest = &all[..];
        let mut messages = Vec::new();
        while !rest.starts_with(b"a ") {
            let end = {
                // one response: up to the end of its literal and closing line
                let f = scan(rest).expect("fetch response");
                let body = string_value(f.get("BODY[]").expect("body")).expect("body");
                messages.push((f.number("UID").expect("uid"), body));
                let lit = rest.windows(3).position(|w| w == b"}\r\n").expect("literal") + 3;
                let after = lit + messages.last().map(|m| m.1.len()).unwrap_or(0);
                after + rest[after..].windows(2).position(|w| w == b"\r\n").expect("eol") + 2
            };
            rest = &rest[end..];
        }
        for (uid, raw) in messages {
            let s = Structure::parse(&raw).expect("parse");
            let fields = |not| SectionText::HeaderFields {
                not,
                fields: vec!["From".into(), "SUBJECT".into(), "Message-ID".into(), "X-None".into()],
            };
            let mut sections = vec![
                Section::default(),
                Section {
                    part: vec![],
                    text: Some(SectionText::Header),
                },
                Section {
                    part: vec![],
                    text: Some(SectionText::Text),
                },
                Section {
                    part: vec![],
                    text: Some(fields(false)),
                },
                Section {
                    part: vec![],
                    text: Some(fields(true)),
                },
            ];
            for p in s.part_paths() {
                sections.push(Section {
                    part: p.clone(),
                    text: None,
                });
                sections.push(Section {
                    part: p.clone(),
                    text: Some(SectionText::Mime),
                });
                for t in [SectionText::Header, SectionText::Text, fields(false)] {
                    let sec = Section {
                        part: p.clone(),
                        text: Some(t),
                    };
                    if s.section(&raw, &sec).is_some() {
                        sections.push(sec);
                    }
                }
            }
            for sec in sections {
                let name = spec(&sec.part, sec.text.as_ref());
                let r = c.cmd("s", &format!("UID FETCH {uid} (BODY.PEEK[{name}])")).await;
                let f = scan(&r).unwrap_or_else(|e| panic!("{e}: {}", show(&r)));
                let live = string_value(f.items.iter().find(|(n, _)| n.starts_with(b"BODY[")).expect("item").1)
                    .expect("string");
                let ours = s.section(&raw, &sec).map(|c| c.into_owned()).unwrap_or_default();
                assert!(
                    ours == live,
                    "{folder} UID {uid} BODY[{name}]:\n ours: {:?}\n live: {:?}",
                    show(&ours),
                    show(&live)
                );
                compared += 1;
            }
        }
    }
    eprintln!("COMPARED {compared}");
    assert!(compared > 100, "compared {compared} sections");
}
