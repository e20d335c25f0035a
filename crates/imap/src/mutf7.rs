//! Modified UTF-7 (RFC 3501 5.1.3), the encoding of non-ASCII mailbox
//! names, for matching names a person typed against the upstream's.

use base64::Engine;

const B64: base64::engine::GeneralPurpose =
    base64::engine::GeneralPurpose::new(&base64::alphabet::IMAP_MUTF7, base64::engine::general_purpose::NO_PAD);

/// Encodes a UTF-8 name.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&B64.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 name for people to read; a malformed shift
/// sequence is kept as it is.
pub fn decode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let chunk = &after[..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let decoded = B64.decode(chunk).ok().and_then(|bytes| {
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| Some(u16::from_be_bytes([c[0], *c.get(1)?])))
                    .collect::<Option<_>>()?;
                String::from_utf16(&units).ok()
            });
            match decoded {
                Some(d) => out.push_str(&d),
                None => out.push_str(&rest[start..start + end + 2]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn decodes() {
        for s in ["Reçus", "~peter/mail/台北/日本語", "A&B", "INBOX", "😀 x"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(decode("&broken"), "&broken");
        assert_eq!(decode("&AOc"), "&AOc");
    }

    #[test]
    fn rfc_examples() {
        assert_eq!(encode("Reçus"), "Re&AOc-us");
        assert_eq!(encode("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(encode("INBOX"), "INBOX");
    }
}
