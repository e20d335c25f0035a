//! THREAD / UID THREAD on a tree folder with ORDEREDSUBJECT, REFERENCES or
//! REFS ([`crate::imap::thread`]), over the messages a search selects.

use imap_codec::imap_types::command::CommandBody;
use mail_parser::HeaderValue;

use crate::imap::response::Status;
use crate::imap::thread::{thread, Algorithm, ThreadMessage};
use crate::store::MessageRecord;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::not_understood;
use super::super::state::State;
use super::search::{answer_ordered, charset_name, internal_time};

/// Message-ids of a References / In-Reply-To header, without brackets.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn thread_message(n: u32, m: &MessageRecord, raw: Option<&[u8]>) -> ThreadMessage {
    let mut t = ThreadMessage {
        n,
        date: internal_time(&m.internaldate),
        ..Default::default()
    };
    let Some(msg) = raw.and_then(crate::imap::mail::parse_default) else {
        return t;
    };
    if let Some(d) = msg.date() {
        t.date = d.to_timestamp();
    }
    t.message_id = msg.message_id().unwrap_or_default().to_string();
    t.references = ids(msg.references());
    if t.references.is_empty() {
        t.references = ids(msg.in_reply_to()).into_iter().take(1).collect();
    }
    t.subject = msg.subject().unwrap_or_default().to_string();
    t
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Thread {
        algorithm,
        charset,
        search_criteria,
        uid,
    }) = req.body()
    else {
        return io.status(not_understood(req)).await;
    };
    let (tag, uid) = (req.tag, *uid);
    let name = algorithm.to_string();
    let Some(algorithm) = Algorithm::parse(&name) else {
        return io
            .status(Status::bad(tag, format!("Unknown thread algorithm {name}")))
            .await;
    };
    // Dovecot writes `* THREAD ` (with the space) when nothing matched;
    // other servers as the snapshot job saw them.
    let empty = st
        .dialect
        .empty_thread
        .clone()
        .unwrap_or_else(|| "* THREAD \r\n".into());
    let empty_answer = empty.clone();
    let order = move |hits: Vec<usize>, raws: Vec<Option<bytes::Bytes>>, messages: &[MessageRecord]| {
        if hits.is_empty() {
            return empty_answer;
        }
        let msgs: Vec<ThreadMessage> = hits
            .into_iter()
            .map(|i| {
                let n = if uid { messages[i].uid } else { (i + 1) as u32 };
                thread_message(n, &messages[i], raws.get(i).and_then(|r| r.as_deref()))
            })
            .collect();
        format!("* THREAD {}\r\n", thread(&msgs, algorithm))
    };
    let search = search_criteria.as_ref();
    let what = (
        "Thread",
        empty.as_str(),
        format!("THREAD {name} {}", charset_name(charset)),
    );
    answer_ordered(st, io, tag, charset, search, what, uid, true, order).await
}
