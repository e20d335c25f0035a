//! Writing `* n FETCH (...)` for a stored message exactly as the upstream
//! (Dovecot) writes it for the live message: the same items, in the same
//! order, with the same literal and quoting choices. Groundwork for the Time
//! Machine folders; checked against Dovecot by `tests/fetch_response.rs`.
//!
//! The order of the items and how HEADER.FIELDS echoes field names are the
//! upstream's, learned at snapshot time ([`crate::dialect::FetchDialect`];
//! Dovecot's by default). Body sections are always literals, even when
//! empty.

use imap_codec::imap_types::fetch::{MessageDataItemName, Part, Section};

use super::dialect::FetchDialect;
use super::section::{partial, path_text, BinaryError, Recorded, SectionText, Structure};

/// Everything about one message a FETCH can ask for.
pub struct MessageView<'a> {
    pub seq: u32,
    pub uid: u32,
    /// Without `\Recent`.
    pub flags: &'a [String],
    /// As the upstream wrote it, without quotes.
    pub internaldate: &'a str,
    pub size: u64,
    pub modseq: u64,
    /// The upstream's raw ENVELOPE, BODYSTRUCTURE and BODY values.
    pub envelope: &'a [u8],
    pub bodystructure: &'a [u8],
    pub body: &'a [u8],
    /// The message bytes; needed only when [`needs_raw`] says so.
    pub raw: Option<&'a [u8]>,
    /// The upstream's own section answers, where recorded: then they, not
    /// the proxy's reading of `raw`, answer every section below the root.
    pub recorded: Option<&'a Recorded>,
}

/// True for the items written from the message bytes.
fn is_literal_item(item: &MessageDataItemName<'_>) -> bool {
    use MessageDataItemName::*;
    matches!(
        item,
        BodyExt { .. } | Rfc822 | Rfc822Header | Rfc822Text | Binary { .. } | BinarySize { .. }
    )
}

/// Whether answering `items` needs the message bytes (a blob read).
pub fn needs_raw(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(is_literal_item)
}

fn part_path(part: &Part) -> Vec<u32> {
    part.0.as_ref().iter().map(|n| n.get()).collect()
}

fn opt_path(part: &Option<Part>) -> Vec<u32> {
    part.as_ref().map(part_path).unwrap_or_default()
}

/// The section as the parser of [`super::section`] wants it, and its name
/// as the upstream echoes it (Dovecot upper-cases field names; Cyrus writes
/// them as asked, as astrings).
fn section_of(section: &Option<Section<'_>>, fields_as_asked: bool) -> (super::section::Section, String) {
    let fields_of = |names: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
        names
            .iter()
            .map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_uppercase())
            .collect()
    };
    let as_asked = |names: &[imap_codec::imap_types::core::AString<'_>]| -> Vec<String> {
        names
            .iter()
            .map(|n| {
                let mut out = Vec::new();
                super::astring(&mut out, n.as_ref());
                String::from_utf8_lossy(&out).into_owned()
            })
            .collect()
    };
    let join = |path: &[u32], text: &str| {
        let p = path_text(path);
        match (p.is_empty(), text.is_empty()) {
            (true, _) => text.to_string(),
            (false, true) => p,
            (false, false) => format!("{p}.{text}"),
        }
    };
    let (part, text, name) = match section {
        None => (Vec::new(), None, String::new()),
        Some(Section::Part(p)) => (part_path(p), None, path_text(&part_path(p))),
        Some(Section::Header(p)) => {
            let path = opt_path(p);
            let name = join(&path, "HEADER");
            (path, Some(SectionText::Header), name)
        }
        Some(Section::Text(p)) => {
            let path = opt_path(p);
            let name = join(&path, "TEXT");
            (path, Some(SectionText::Text), name)
        }
        Some(Section::Mime(p)) => {
            let path = part_path(p);
            let name = join(&path, "MIME");
            (path, Some(SectionText::Mime), name)
        }
        Some(Section::HeaderFields(p, names)) | Some(Section::HeaderFieldsNot(p, names)) => {
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            let path = opt_path(p);
            let fields = fields_of(names.as_ref());
            let kw = if not { "HEADER.FIELDS.NOT" } else { "HEADER.FIELDS" };
            let echoed = if fields_as_asked {
                as_asked(names.as_ref())
            } else {
                fields.clone()
            };
            let name = join(&path, &format!("{kw} ({})", echoed.join(" ")));
            (path, Some(SectionText::HeaderFields { not, fields }), name)
        }
    };
    (super::section::Section { part, text }, name)
}

fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// A section's bytes: a literal, or `""` when empty where the upstream
/// writes it so.
fn section_literal(out: &mut Vec<u8>, bytes: &[u8], dialect: &FetchDialect) {
    if bytes.is_empty() && dialect.empty_quoted {
        out.extend_from_slice(b"\"\"");
    } else {
        literal(out, bytes);
    }
}

/// Appends the whole untagged FETCH response for `items`. A BINARY that
/// cannot be decoded fails the message as Dovecot fails it: what was
/// written so far is closed (or `(UID n)` when nothing was), and the error
/// says which tagged `NO` ends the command.
pub fn write(
    out: &mut Vec<u8>,
    m: &MessageView<'_>,
    items: &[MessageDataItemName<'_>],
    uid_command: bool,
    dialect: &FetchDialect,
) -> Result<(), BinaryError> {
    write_with(out, m, items, uid_command, dialect, &mut |out, raw| {
        out.extend_from_slice(raw)
    })
}

/// [`write`], with the whole message's bytes (`BODY[]`, `RFC822`, after
/// their literal's `{n}\r\n`) handed to `whole`, which appends them to
/// `out` or takes `out` and sends both without copying the message
/// (a whole-folder `BODY[]` spent a fifth of its time in that copy).
pub fn write_with(
    out: &mut Vec<u8>,
    m: &MessageView<'_>,
    items: &[MessageDataItemName<'_>],
    uid_command: bool,
    dialect: &FetchDialect,
    whole: &mut dyn FnMut(&mut Vec<u8>, &[u8]),
) -> Result<(), BinaryError> {
    use MessageDataItemName::*;
    out.extend_from_slice(format!("* {} FETCH (", m.seq).as_bytes());
    let mut first = true;
    // A UID command's UID goes first in its group (Dovecot writes it
    // first even when asked after other items).
    let implicit_uid = uid_command;
    // Parsing the MIME tree costs more than the rest together: only when a
    // section below the whole message is asked for.
    let parsed: std::cell::OnceCell<Option<Structure>> = std::cell::OnceCell::new();
    let structure = || -> Option<&Structure> {
        parsed
            .get_or_init(|| {
                m.raw
                    .and_then(Structure::parse)
                    .map(|s| s.with_strict_leaves(dialect.strict_leaves))
            })
            .as_ref()
    };
    let raw = m.raw.unwrap_or_default();
    // A view of only some BINARY.SIZE answers leaves the rest to the
    // proxy's reading.
    let full = m.recorded.filter(|r| r.is_full());
    let section_bytes = |sec: &super::section::Section| match full {
        Some(r) => {
            // A view records the parts BODYSTRUCTURE numbers; Dovecot also
            // serves a leaf of a multipart as its own part 1 (`[2.1]` of a
            // leaf 2), where the proxy's reading finds one.
            let asked = sec;
            let mut sec = std::borrow::Cow::Borrowed(sec);
            loop {
                if let Some(b) = r.section(raw, &sec) {
                    break Some(b);
                }
                let leaf_one = !dialect.strict_leaves
                    && sec.part.len() > 1
                    && sec.part.last() == Some(&1)
                    && matches!(sec.text, None | Some(SectionText::Mime))
                    && structure().is_some_and(|s| s.section(raw, asked).is_some());
                if !leaf_one {
                    break None;
                }
                let mut parent = sec.into_owned();
                parent.part.pop();
                sec = std::borrow::Cow::Owned(parent);
            }
        }
        None => structure().and_then(|s| s.section(raw, sec)),
    };
    let binary = |path: &[u32]| match full {
        Some(r) => r.binary(path),
        None => structure().map_or(Ok(None), |s| s.binary(raw, path)),
    };
    // The part a full view answers `path` with: the path itself, or where
    // Dovecot serves a leaf of a multipart as its own part 1 (and the
    // proxy's reading finds that part), the leaf the view recorded.
    let view_path = |path: &[u32], known: &dyn Fn(&str) -> bool| -> Vec<u32> {
        let mut p = path.to_vec();
        let whole = super::section::Section {
            part: path.to_vec(),
            text: None,
        };
        if full.is_none() || dialect.strict_leaves || structure().is_none_or(|s| s.section(raw, &whole).is_none()) {
            return p;
        }
        while !known(&path_text(&p)) && p.len() > 1 && p.last() == Some(&1) {
            p.pop();
        }
        p
    };
    {
        for slot in dialect.order.arrange(items, implicit_uid) {
            let item = slot.and_then(|i| items.get(i)).unwrap_or(&Uid);
            let mark = out.len();
            if !first {
                out.push(b' ');
            }
            let failed = |out: &mut Vec<u8>, first: bool, e: BinaryError| {
                out.truncate(mark);
                if first {
                    out.extend_from_slice(format!("UID {}", m.uid).as_bytes());
                }
                out.extend_from_slice(b")\r\n");
                Err(e)
            };
            let was_first = first;
            first = false;
            // Written straight into `out`: a whole-message literal is
            // copied once.
            let p = &mut *out;
            match item {
                Uid => p.extend_from_slice(format!("UID {}", m.uid).as_bytes()),
                Flags => p.extend_from_slice(format!("FLAGS ({})", m.flags.join(" ")).as_bytes()),
                InternalDate => p.extend_from_slice(format!("INTERNALDATE \"{}\"", m.internaldate).as_bytes()),
                Rfc822Size => p.extend_from_slice(format!("RFC822.SIZE {}", m.size).as_bytes()),
                ModSeq => p.extend_from_slice(format!("MODSEQ ({})", m.modseq).as_bytes()),
                Envelope => {
                    p.extend_from_slice(b"ENVELOPE ");
                    p.extend_from_slice(m.envelope);
                }
                BodyStructure => {
                    p.extend_from_slice(b"BODYSTRUCTURE ");
                    p.extend_from_slice(m.bodystructure);
                }
                Body => {
                    p.extend_from_slice(b"BODY ");
                    p.extend_from_slice(m.body);
                }
                BodyExt {
                    section,
                    partial: range,
                    ..
                } => {
                    let (sec, name) = section_of(section, dialect.fields_as_asked);
                    // BODY[] and BODY[]<partial> are the bytes as stored.
                    let whole_message = sec.part.is_empty() && sec.text.is_none();
                    let bytes = if whole_message {
                        std::borrow::Cow::Borrowed(raw)
                    } else {
                        match section_bytes(&sec) {
                            Some(b) => b,
                            None if dialect.missing_nil => {
                                match range {
                                    Some((origin, _)) => {
                                        p.extend_from_slice(format!("BODY[{name}]<{origin}> NIL").as_bytes())
                                    }
                                    None => p.extend_from_slice(format!("BODY[{name}] NIL").as_bytes()),
                                }
                                continue;
                            }
                            None => Default::default(),
                        }
                    };
                    match range {
                        Some((origin, count)) => {
                            p.extend_from_slice(format!("BODY[{name}]<{origin}> ").as_bytes());
                            section_literal(p, partial(&bytes, *origin, count.get()), dialect);
                        }
                        None if whole_message => {
                            p.extend_from_slice(format!("BODY[] {{{}}}\r\n", raw.len()).as_bytes());
                            whole(p, raw);
                        }
                        None => {
                            p.extend_from_slice(format!("BODY[{name}] ").as_bytes());
                            section_literal(p, &bytes, dialect);
                        }
                    }
                }
                Rfc822 | Rfc822Header | Rfc822Text => {
                    let (label, text) = match item {
                        Rfc822 => ("RFC822", None),
                        Rfc822Header => ("RFC822.HEADER", Some(SectionText::Header)),
                        _ => ("RFC822.TEXT", Some(SectionText::Text)),
                    };
                    let sec = super::section::Section { part: Vec::new(), text };
                    p.extend_from_slice(format!("{label} ").as_bytes());
                    match sec.text {
                        None => {
                            p.extend_from_slice(format!("{{{}}}\r\n", raw.len()).as_bytes());
                            whole(p, raw);
                        }
                        Some(_) => section_literal(p, &section_bytes(&sec).unwrap_or_default(), dialect),
                    }
                }
                Binary {
                    section,
                    partial: range,
                    ..
                } => {
                    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                    let name = path_text(&path);
                    let path = view_path(&path, &|n| {
                        m.recorded
                            .is_some_and(|r| r.recorded_binary(n).is_some() || r.omitted(&format!("BINARY[{n}]")))
                    });
                    let view_name = path_text(&path);
                    if m.recorded.is_some_and(|r| r.omitted(&format!("BINARY[{view_name}]"))) {
                        out.truncate(mark);
                        first = was_first;
                        continue;
                    }
                    // The upstream's own answer where it was recorded.
                    let answer = match m.recorded.and_then(|r| r.recorded_binary(&view_name)) {
                        Some(a) => a.map(|(b, literal8)| (std::borrow::Cow::Borrowed(b), literal8)),
                        None if dialect.missing_nil && matches!(binary(&path), Ok(None)) => {
                            let origin = range.map(|(o, _)| format!("<{o}>")).unwrap_or_default();
                            out.extend_from_slice(format!("BINARY[{name}]{origin} NIL").as_bytes());
                            continue;
                        }
                        None => binary(&path).map(|b| {
                            let (bytes, decoded) = b.unwrap_or_default();
                            // literal8 (RFC 3516) as Dovecot decides it:
                            // whenever a transfer encoding was removed, or
                            // a NUL is present.
                            let literal8 = decoded || bytes.contains(&0);
                            (std::borrow::Cow::Owned(bytes), literal8)
                        }),
                    };
                    let (bytes, literal8) = match answer {
                        Ok(a) => a,
                        Err(e) => return failed(out, was_first, e),
                    };
                    let (label, slice) = match range {
                        Some((origin, count)) => (
                            format!("BINARY[{name}]<{origin}> "),
                            partial(&bytes, *origin, count.get()),
                        ),
                        None => (format!("BINARY[{name}] "), &bytes[..]),
                    };
                    out.extend_from_slice(label.as_bytes());
                    if literal8 {
                        out.push(b'~');
                        literal(out, slice);
                    } else {
                        section_literal(out, slice, dialect);
                    }
                }
                BinarySize { section } => {
                    let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                    let name = path_text(&path);
                    let path = view_path(&path, &|n| {
                        m.recorded.is_some_and(|r| {
                            r.recorded_binary_size(n).is_some() || r.omitted(&format!("BINARY.SIZE[{n}]"))
                        })
                    });
                    let view_name = path_text(&path);
                    if m.recorded
                        .is_some_and(|r| r.omitted(&format!("BINARY.SIZE[{view_name}]")))
                    {
                        out.truncate(mark);
                        first = was_first;
                        continue;
                    }
                    if let Some(answer) = m.recorded.and_then(|r| r.recorded_binary_size(&view_name)) {
                        match answer {
                            Ok(n) => out.extend_from_slice(format!("BINARY.SIZE[{name}] {n}").as_bytes()),
                            Err(e) => return failed(out, was_first, e),
                        }
                        continue;
                    }
                    let part = binary(&path);
                    // A missing part is 0; otherwise Dovecot sizes BINARY
                    // from the whole message's decoding: any part that does
                    // not decode fails every size, an unknown encoding
                    // before invalid data.
                    if !matches!(part, Ok(None)) {
                        let whole = match full {
                            Some(r) => r.decodes(),
                            None => structure().map_or(Ok(()), |s| s.decodes(raw)),
                        };
                        if let Err(e) = whole {
                            return failed(out, was_first, e);
                        }
                    }
                    let n = match part {
                        Ok(b) => b.map(|(b, _)| b.len()).unwrap_or(0),
                        Err(e) => return failed(out, was_first, e),
                    };
                    out.extend_from_slice(format!("BINARY.SIZE[{name}] {n}").as_bytes());
                }
            }
        }
    }
    out.extend_from_slice(b")\r\n");
    Ok(())
}
