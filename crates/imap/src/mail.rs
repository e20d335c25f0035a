//! The one way the proxy parses a message with mail-parser.
//!
//! mail-parser 0.11.9 panics on some malformed multiparts ("Invalid part
//! ID, could not find multipart", found by `tests/mime_fuzz.rs`). A user's
//! mail must never take down a session or a snapshot, so every parse runs
//! behind `catch_unwind` and such a message simply has no parse (callers
//! then fall back to the upstream's recorded answers or treat it as
//! unparsable).

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::{Message, MessageParser};

/// `parser.parse(raw)`, or `None` when it fails or panics.
pub fn parse<'x>(parser: &MessageParser, raw: &'x [u8]) -> Option<Message<'x>> {
    catch_unwind(AssertUnwindSafe(|| parser.parse(raw))).ok().flatten()
}

/// [`parse`] with mail-parser's default settings.
pub fn parse_default(raw: &[u8]) -> Option<Message<'_>> {
    parse(&MessageParser::default(), raw)
}

#[cfg(test)]
mod tests {
    /// A message of the MIME fuzzer (seed 20261201) on which mail-parser
    /// 0.11.9 panics; kept in the fuzz corpus.
    const PANICS: &[u8] = include_bytes!("../../../fuzz/corpus/message/mail-parser-panic.eml");

    #[test]
    fn a_message_that_panics_mail_parser_has_no_parse() {
        let direct = std::panic::catch_unwind(|| mail_parser::MessageParser::default().parse(PANICS).is_some());
        assert!(
            direct.is_err(),
            "mail-parser no longer panics here: the wrapper could go"
        );
        assert!(super::parse_default(PANICS).is_none());
    }
}
