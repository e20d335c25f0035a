//! The sent date of a message as Dovecot derives it from the `Date:`
//! header for SENTBEFORE/SENTON/SENTSINCE and SORT (DATE), measured
//! against Dovecot 2.3 (docs/research/dovecot-search-semantics.md
//! section 1) rather than taken from RFC 5322 alone: the first `Date:`
//! header; a lenient parse that still refuses impossible calendars; unknown
//! zones as +0000; a missing or invalid date as the epoch; and the UTC time
//! kept as an unsigned 32-bit number.

use crate::section::header_value;

/// A parsed sent date: seconds since the epoch (UTC, already wrapped to 32
/// bits as Dovecot stores it) and the header's zone in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentDate {
    pub utc: i64,
    pub zone_minutes: i64,
}

impl SentDate {
    /// What a missing or invalid Date header counts as.
    pub const EPOCH: SentDate = SentDate {
        utc: 0,
        zone_minutes: 0,
    };

    /// The calendar day the SENT* keys compare: the date as written, in the
    /// header's own zone.
    pub fn day(self) -> (i64, u32, u32) {
        civil_from_days((self.utc + self.zone_minutes * 60).div_euclid(86_400))
    }
}

/// The sent date of a message whose header block is `header`.
pub fn of_header(header: &[u8]) -> SentDate {
    header_value(header, "Date")
        .and_then(|v| parse(&v))
        .unwrap_or(SentDate::EPOCH)
}

/// The header block of a whole message (up to and including the empty line).
pub fn header_block(raw: &[u8]) -> &[u8] {
    let end = [&b"\r\n\r\n"[..], b"\n\n"]
        .iter()
        .filter_map(|sep| memchr::memmem::find(raw, sep).map(|p| p + sep.len()))
        .min()
        .unwrap_or(raw.len());
    raw.get(..end).unwrap_or(raw)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Parses a Date header value; `None` when Dovecot calls it invalid.
pub fn parse(value: &str) -> Option<SentDate> {
    let mut words = value.split([' ', '\t']).filter(|w| !w.is_empty()).peekable();
    // An optional weekday, which must end with a comma (its value is not checked).
    if words.peek()?.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let dow = words.next()?;
        if !dow.ends_with(',') {
            return None;
        }
    }
    let day = digits(words.next()?, 1, 2)?;
    let month_word = words.next()?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| month_word.get(..3) == Some(*m))? as u32 + 1;
    let year_word = words.next()?;
    let year = match year_word.len() {
        4 => digits(year_word, 4, 4)?,
        2 => {
            let y = digits(year_word, 2, 2)?;
            if y < 70 {
                2000 + y
            } else {
                1900 + y
            }
        }
        _ => return None,
    };
    let mut time = words.next()?.split(':');
    let hour = digits(time.next()?, 1, 2)?;
    let minute = digits(time.next()?, 2, 2)?;
    let second = match time.next() {
        Some(s) => digits(s, 2, 2)?,
        None => 0,
    };
    if time.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let zone_minutes = words.next().map(zone).unwrap_or(0);
    let local = days_from_civil(year, month, day as u32) * 86_400 + hour * 3600 + minute * 60 + second;
    let utc = local - zone_minutes * 60;
    Some(SentDate {
        utc: utc.rem_euclid(1 << 32),
        zone_minutes,
    })
}

/// A number of `min..=max` ASCII digits.
fn digits(s: &str, min: usize, max: usize) -> Option<i64> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A zone's offset in minutes; anything unknown is +0000.
fn zone(z: &str) -> i64 {
    let b = z.as_bytes();
    if b.len() == 5 && matches!(b[0], b'+' | b'-') && b[1..].iter().all(u8::is_ascii_digit) {
        let hh = i64::from(b[1] - b'0') * 10 + i64::from(b[2] - b'0');
        let mm = i64::from(b[3] - b'0') * 10 + i64::from(b[4] - b'0');
        let m = hh * 60 + mm;
        return if b[0] == b'-' { -m } else { m };
    }
    let hours = match z.to_ascii_uppercase().as_str() {
        "UT" | "GMT" | "Z" => 0,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        one if one.len() == 1 => match one.as_bytes()[0] {
            c @ b'A'..=b'I' => i64::from(c - b'A') + 1,
            c @ b'K'..=b'M' => i64::from(c - b'K') + 10,
            c @ b'N'..=b'Y' => -(i64::from(c - b'N') + 1),
            _ => 0,
        },
        _ => 0,
    };
    hours * 60
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(v: &str) -> Option<(i64, u32, u32)> {
        parse(v).map(SentDate::day)
    }

    /// The cases of the research transcript, with Dovecot's answers.
    #[test]
    fn dates_as_dovecot_reads_them() {
        assert_eq!(day("Fri, 02 Jan 2026 05:00:00 +1400"), Some((2026, 1, 2)));
        assert_eq!(day("Thu, 01 Jan 2026 20:00:00 -1200"), Some((2026, 1, 1)));
        assert_eq!(day("Thu, 01 Jan 2026 22:00:00 EST"), Some((2026, 1, 1)));
        assert_eq!(day("Thu, 01 Jan 2026 23:30:00"), Some((2026, 1, 1)));
        assert_eq!(day("Thu, 01 Jan 26 10:00:00 +0000"), Some((2026, 1, 1)));
        assert_eq!(day("Wed, 01 Jan 69 10:00:00 +0000"), Some((2069, 1, 1)));
        assert_eq!(day("01 Jan 2026 10:00:00 +0000"), Some((2026, 1, 1)));
        assert!(parse("Fri, 31 Dec 1999 23:59:60 GMT").is_some());
        assert_eq!(day("Sat, 7 Nov 2026 09:00:00 CEST"), Some((2026, 11, 7)));
        for invalid in [
            "Sat, 31 Feb 2026 10:00:00 +0000",
            "Thu, 01 Jan 2026 25:61:00 +0000",
            "Thu 01 Jan 2026 10:00:00 +0000",
            "2026-11-02T10:00:00Z",
            "not a date at all",
            "01 Jan 202 10:00:00 +0000",
            "",
        ] {
            assert_eq!(parse(invalid), None, "{invalid}");
        }
        // Missing or invalid: the epoch. A 1960 date wraps to 2096.
        assert_eq!(of_header(b"Subject: x\r\n\r\n").day(), (1970, 1, 1));
        assert_eq!(day("Mon, 2 Nov 1960 10:00:00 +0000"), Some((2096, 12, 8)));
        // The first Date header counts.
        assert_eq!(
            of_header(b"Date: Mon, 05 Jan 2026 10:00:00 +0000\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\r\n").day(),
            (2026, 1, 5)
        );
        assert_eq!(header_block(b"A: b\nC: d\n\nbody\r\n\r\n"), b"A: b\nC: d\n\n");
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
