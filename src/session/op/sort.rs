//! SORT / UID SORT on a tree folder (RFC 5256), over the messages a search
//! selects ([`super::search`]).

use std::cmp::Ordering;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use mail_parser::Address;

use crate::imap::sent_date::{self, SentDate};

use crate::imap::thread::base_subject;
use crate::store::MessageRecord;

use super::super::io::{Io, Outcome, Request};
use super::super::reply::not_understood;
use super::super::state::State;
use super::search::{answer_ordered, charset_name, internal_time};

/// What SORT compares for one message.
#[derive(Default)]
struct SortValues {
    arrival: i64,
    date: i64,
    size: u64,
    from: String,
    to: String,
    cc: String,
    display_from: String,
    display_to: String,
    subject: String,
}

fn first_mailbox(a: Option<&Address<'_>>) -> (String, String) {
    let Some(addr) = a.and_then(|a| a.first()) else {
        return (String::new(), String::new());
    };
    let email = addr.address.as_deref().unwrap_or("");
    let mailbox = email.split('@').next().unwrap_or("").to_string();
    let display = addr
        .name
        .as_deref()
        .map(str::to_string)
        .unwrap_or_else(|| email.to_string());
    (mailbox, display)
}

fn sort_values(m: &MessageRecord, raw: Option<&[u8]>) -> SortValues {
    let mut v = SortValues {
        arrival: internal_time(&m.internaldate),
        size: m.size,
        ..Default::default()
    };
    // As Dovecot: the Date header's instant, or the arrival time where it
    // is missing or invalid (crate::imap::sent_date).
    let sent = raw.map_or(SentDate::EPOCH, |r| sent_date::of_header(sent_date::header_block(r)));
    v.date = if sent.utc != 0 { sent.utc } else { v.arrival };
    let Some(msg) = raw.and_then(crate::imap::mail::parse_default) else {
        return v;
    };
    let (from, dfrom) = first_mailbox(msg.from());
    let (to, dto) = first_mailbox(msg.to());
    v.from = from.to_ascii_uppercase();
    v.display_from = dfrom.to_ascii_uppercase();
    v.to = to.to_ascii_uppercase();
    v.display_to = dto.to_ascii_uppercase();
    v.cc = first_mailbox(msg.cc()).0.to_ascii_uppercase();
    v.subject = base_subject(msg.subject().unwrap_or("")).0;
    v
}

fn compare(a: &SortValues, b: &SortValues, key: &SortKey) -> Ordering {
    match key {
        SortKey::Arrival => a.arrival.cmp(&b.arrival),
        SortKey::Date => a.date.cmp(&b.date),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::From => a.from.cmp(&b.from),
        SortKey::To => a.to.cmp(&b.to),
        SortKey::Cc => a.cc.cmp(&b.cc),
        SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
        SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
        SortKey::Subject => a.subject.cmp(&b.subject),
    }
}

pub async fn handle(st: &mut State, io: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let Some(CommandBody::Sort {
        sort_criteria,
        charset,
        search_criteria,
        uid,
    }) = req.body()
    else {
        return io.status(not_understood(req)).await;
    };
    let (tag, uid) = (req.tag, *uid);
    let criteria: Vec<SortCriterion> = sort_criteria.as_ref().to_vec();
    let keep_raw = criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
    let order = move |hits: Vec<usize>, raws: Vec<Option<bytes::Bytes>>, messages: &[MessageRecord]| {
        let mut rows: Vec<(usize, SortValues)> = hits
            .into_iter()
            .map(|i| (i, sort_values(&messages[i], raws.get(i).and_then(|r| r.as_deref()))))
            .collect();
        rows.sort_by(|(ia, a), (ib, b)| {
            for c in &criteria {
                let o = compare(a, b, &c.key);
                let o = if c.reverse { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            ia.cmp(ib)
        });
        let mut out = String::from("* SORT");
        for (i, _) in rows {
            let n = if uid { messages[i].uid } else { (i + 1) as u32 };
            out.push(' ');
            out.push_str(&n.to_string());
        }
        out.push_str("\r\n");
        out
    };
    let search = search_criteria.as_ref();
    let upstream = format!(
        "SORT ({}) {}",
        criteria_text(sort_criteria.as_ref()),
        charset_name(charset)
    );
    let what = ("Sort", "* SORT\r\n", upstream);
    answer_ordered(st, io, tag, charset, search, what, uid, keep_raw, order).await
}

/// Sort criteria as a command writes them (`REVERSE DATE SUBJECT`).
fn criteria_text(criteria: &[SortCriterion]) -> String {
    let words: Vec<String> = criteria
        .iter()
        .map(|c| {
            let key = match c.key {
                SortKey::Arrival => "ARRIVAL",
                SortKey::Date => "DATE",
                SortKey::Size => "SIZE",
                SortKey::From => "FROM",
                SortKey::To => "TO",
                SortKey::Cc => "CC",
                SortKey::DisplayFrom => "DISPLAYFROM",
                SortKey::DisplayTo => "DISPLAYTO",
                SortKey::Subject => "SUBJECT",
            };
            if c.reverse {
                format!("REVERSE {key}")
            } else {
                key.to_string()
            }
        })
        .collect();
    words.join(" ")
}
