//! Sequence sets against a folder the proxy answers itself: which messages
//! a `1:*`, `3,5:7` or UID set names, and the compact UID sets of COPYUID.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// A sequence number outside the folder (Dovecot answers `BAD ... Invalid
/// messageset`); UID sets never fail, unknown UIDs are simply absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSet;

/// Indices (0-based, ascending, without duplicates) of the messages `set`
/// names. `uids` are the folder's UIDs in ascending order.
pub fn resolve(set: &SequenceSet, uids: &[u32], uid: bool) -> Result<Vec<usize>, InvalidSet> {
    let n = uids.len();
    let mut hit = vec![false; n];
    let mut any = false;
    for seq in set.0.as_ref() {
        let (a, b) = match seq {
            Sequence::Single(x) => (*x, *x),
            Sequence::Range(x, y) => (*x, *y),
        };
        if uid {
            let last = uids.last().copied().unwrap_or(0);
            let value = |v: SeqOrUid| match v {
                SeqOrUid::Value(v) => v.get(),
                SeqOrUid::Asterisk => last,
            };
            let (lo, hi) = (value(a).min(value(b)), value(a).max(value(b)));
            let start = uids.partition_point(|&u| u < lo);
            let end = uids.partition_point(|&u| u <= hi);
            for h in &mut hit[start..end] {
                *h = true;
                any = true;
            }
        } else {
            let value = |v: SeqOrUid| match v {
                SeqOrUid::Value(v) => v.get() as usize,
                SeqOrUid::Asterisk => n,
            };
            let (lo, hi) = (value(a).min(value(b)), value(a).max(value(b)));
            if lo == 0 || hi > n {
                return Err(InvalidSet);
            }
            for h in &mut hit[lo - 1..hi] {
                *h = true;
                any = true;
            }
        }
    }
    if !any {
        return Ok(Vec::new());
    }
    Ok(hit.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i).collect())
}

/// Indices of the messages among `n` whose sequence numbers `set` names,
/// numbers past the last ignored (as Cyrus serves a FETCH that names some).
pub fn resolve_existing(set: &SequenceSet, n: usize) -> Vec<usize> {
    let mut hit = vec![false; n];
    let value = |v: SeqOrUid| match v {
        SeqOrUid::Value(v) => v.get() as usize,
        SeqOrUid::Asterisk => n,
    };
    for seq in set.0.as_ref() {
        let (a, b) = match seq {
            Sequence::Single(x) => (value(*x), value(*x)),
            Sequence::Range(x, y) => (value(*x), value(*y)),
        };
        let (lo, hi) = (a.min(b).max(1), a.max(b).min(n));
        for h in hit.iter_mut().take(hi).skip(lo - 1) {
            *h = true;
        }
    }
    hit.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i).collect()
}

/// Whether `value` is in `set`, `*` standing for `star` (SEARCH keys:
/// numbers outside the folder simply match nothing). `reversible`: `n:*`
/// with `n` past the end is `*:n` (RFC 3501 9, and UID sets everywhere);
/// else it is empty, as Dovecot reads message numbers.
pub fn contains(set: &SequenceSet, value: u32, star: u32, reversible: bool) -> bool {
    let v = |x: SeqOrUid| match x {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => star,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(x) => v(*x) == value,
        // Dovecot reads `n:*` as "n to the end": empty when n is past it.
        Sequence::Range(a, SeqOrUid::Asterisk) | Sequence::Range(SeqOrUid::Asterisk, a) if !reversible => {
            (v(*a)..=star).contains(&value)
        }
        Sequence::Range(a, b) => (v(*a).min(v(*b))..=v(*a).max(v(*b))).contains(&value),
    })
}

/// `1:3,7` style text of numbers in the given order (ranges only where
/// consecutive): UID sets for FETCH, COPYUID and APPENDUID.
pub fn compact(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j].wrapping_add(1) {
            j += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if j > i {
            out.push_str(&format!("{start}:{}", numbers[j]));
        } else {
            out.push_str(&start.to_string());
        }
        i = j + 1;
    }
    out
}

/// Most UIDs [`expand`] writes out (a server's set is never larger than
/// what the proxy appended; a hostile one must not exhaust memory).
const MAX_EXPANDED: usize = 10_000_000;

/// Expands a UID set as the upstream writes it in APPENDUID (`5:7,9`).
pub fn expand(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                let (lo, hi) = (a.min(b), a.max(b));
                if (hi - lo) as usize + out.len() > MAX_EXPANDED {
                    return None;
                }
                out.extend(lo..=hi);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        s.parse().expect("valid set")
    }

    #[test]
    fn sequence_numbers() {
        let uids = [3, 5, 9, 10];
        assert_eq!(resolve(&set("1:*"), &uids, false), Ok(vec![0, 1, 2, 3]));
        assert_eq!(resolve(&set("*:2"), &uids, false), Ok(vec![1, 2, 3]));
        assert_eq!(resolve(&set("4,1,1"), &uids, false), Ok(vec![0, 3]));
        assert_eq!(resolve(&set("5"), &uids, false), Err(InvalidSet));
        assert_eq!(resolve(&set("1:*"), &[], false), Err(InvalidSet));
    }

    /// Past the last message, Cyrus's way: what exists is served.
    #[test]
    fn existing_numbers_only() {
        assert_eq!(resolve_existing(&set("3:99"), 4), vec![2, 3]);
        assert_eq!(resolve_existing(&set("1,99"), 4), vec![0]);
        assert_eq!(resolve_existing(&set("99:*"), 4), vec![3]);
        assert_eq!(resolve_existing(&set("99"), 4), Vec::<usize>::new());
        assert_eq!(resolve_existing(&set("1:*"), 0), Vec::<usize>::new());
    }

    #[test]
    fn uids() {
        let uids = [3, 5, 9, 10];
        assert_eq!(resolve(&set("1:*"), &uids, true), Ok(vec![0, 1, 2, 3]));
        assert_eq!(resolve(&set("4:9"), &uids, true), Ok(vec![1, 2]));
        assert_eq!(resolve(&set("11:*"), &uids, true), Ok(vec![3]));
        assert_eq!(resolve(&set("100"), &uids, true), Ok(vec![]));
        assert_eq!(resolve(&set("1:*"), &[], true), Ok(vec![]));
    }

    #[test]
    fn compact_and_expand() {
        assert_eq!(compact(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compact(&[5]), "5");
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
        assert_eq!(expand("1:3,7"), Some(vec![1, 2, 3, 7]));
        assert_eq!(expand("x"), None);
        assert_eq!(expand("1:9000000,1:9000000"), None, "bounded in total");
    }
}
