//! Hostile MIME, generated deterministically from a seed, for the
//! differential MIME fuzzer (`tests/mime_fuzz.rs`): every message is what a
//! mail server accepts and a careless parser misreads. Boundaries missing,
//! duplicated, clashing between nesting levels or unterminated; headers
//! without bodies and bodies without headers; CR/LF mixtures, 8-bit bytes,
//! long lines; deep nesting; message/rfc822 and multipart/digest; broken
//! base64 and quoted-printable; Date headers missing, garbled or in odd
//! zones.

/// splitmix64: small, seedable, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "invoice",
    "lunch",
    "meeting",
    "report",
    "zebra",
    "quartz",
    "budget",
    "holiday",
    "ticket",
    "urgent",
    "draft",
    "minutes",
    "photo",
    "contract",
    "renewal",
    "caf\u{e9}",
    "stra\u{df}e",
    "\u{8b70}\u{4e8b}\u{9332}",
];

const DATES: &[&str] = &[
    "Mon, 2 Nov 2026 10:00:00 +0000",
    "Tue, 3 Nov 2026 23:30:00 -0800",
    "Wed, 04 Nov 2026 05:00:00 +1400",
    "4 Nov 2026 20:00:00 -1200",
    "Sun, 1 Jan 2001 12:00:00 EST",
    "Fri, 31 Dec 1999 23:59:60 GMT",
    "Thu, 5 Nov 26 08:00:00 +0100",
    "Thu, 5 Nov 99 08:00:00 Z",
    "Sat, 7 Nov 2026 09:00:00 CEST",
    "Mon, 2 Nov 2026 10:00:00",
    "31 Feb 2026 10:00:00 +0000",
    "2026-11-02T10:00:00Z",
    "yesterday, around noon",
    "",
    "Fri, 6 Nov 2026 25:61:00 +0000",
    "Mon, 2 Nov 1960 10:00:00 +0000",
];

const ENCODINGS: &[&str] = &[
    "7bit",
    "8bit",
    "base64",
    "quoted-printable",
    "binary",
    "x-uuencode",
    "BASE64",
];

pub struct Generator {
    rng: Rng,
    /// Boundaries in use by enclosing multiparts (to clash with).
    boundaries: Vec<String>,
    eol: &'static [u8],
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            boundaries: Vec::new(),
            eol: b"\r\n",
        }
    }

    fn words(&mut self, n: usize) -> String {
        (0..n).map(|_| *self.rng.pick(WORDS)).collect::<Vec<_>>().join(" ")
    }

    /// A line ending: mostly CRLF, sometimes a bare LF or CR.
    fn eol(&mut self) -> &'static [u8] {
        match self.rng.below(40) {
            0 => b"\n",
            1 => b"\r",
            _ => self.eol,
        }
    }

    fn line(&mut self, out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(text.as_bytes());
        let eol = self.eol();
        out.extend_from_slice(eol);
    }

    fn text_body(&mut self, out: &mut Vec<u8>) {
        for _ in 0..self.rng.below(6) {
            let mut l = {
                let n = 1 + self.rng.below(12);
                self.words(n)
            };
            match self.rng.below(12) {
                0 => l.push_str("   \t"),
                1 => l = "x".repeat(1000 + self.rng.below(200)),
                2 => l = format!("> {l}"),
                3 => l.clear(),
                4 => l = format!("--{}", self.boundaries.last().cloned().unwrap_or_default()),
                _ => {}
            }
            self.line(out, &l);
        }
        if self.rng.chance(5) {
            out.extend_from_slice(b"8-bit \xe9\xff\x80 bytes");
            out.extend_from_slice(self.eol);
        }
        if self.rng.chance(2) {
            out.extend_from_slice(b"nul\x00byte");
            out.extend_from_slice(self.eol);
        }
    }

    fn base64_body(&mut self, out: &mut Vec<u8>) {
        let data: Vec<u8> = (0..self.rng.below(200)).map(|_| self.rng.next() as u8).collect();
        let mut text = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &data);
        match self.rng.below(10) {
            0 => text.insert(text.len() / 2, '!'),
            1 => {
                text = text.trim_end_matches('=').to_string();
            }
            2 => text.push_str("QUJD"),
            3 => text.insert_str(text.len() / 2, " \t "),
            _ => {}
        }
        let bytes = text.into_bytes();
        for chunk in bytes.chunks(76) {
            out.extend_from_slice(chunk);
            let eol = self.eol();
            out.extend_from_slice(eol);
        }
    }

    fn qp_body(&mut self, out: &mut Vec<u8>) {
        for _ in 0..1 + self.rng.below(5) {
            let mut l = {
                let n = 1 + self.rng.below(8);
                self.words(n)
            };
            match self.rng.below(10) {
                0 => l.push_str("  "),
                1 => l.push_str(" ="),
                2 => l.push_str("=E9=e9"),
                3 => l.push_str(" =ZZ"),
                4 => l.push_str("= \t"),
                5 => l.push_str("=3D=20"),
                _ => {}
            }
            self.line(out, &l);
        }
        if self.rng.chance(5) {
            out.extend_from_slice(b"last=");
        }
    }

    fn leaf_header(&mut self, out: &mut Vec<u8>, ctype: &str, encoding: Option<&str>) {
        let eol = self.eol;
        out.extend_from_slice(format!("Content-Type: {ctype}").as_bytes());
        out.extend_from_slice(eol);
        if let Some(e) = encoding {
            out.extend_from_slice(format!("Content-Transfer-Encoding: {e}").as_bytes());
            out.extend_from_slice(eol);
        }
        if self.rng.chance(20) {
            out.extend_from_slice(b"Content-Disposition: attachment; filename=\"f.bin\"");
            out.extend_from_slice(eol);
        }
    }

    /// One entity (header and body) of nesting `depth`.
    fn entity(&mut self, out: &mut Vec<u8>, depth: usize, digest_default: bool) {
        let kind = if depth >= 4 {
            self.rng.below(3)
        } else {
            self.rng.below(7)
        };
        match kind {
            // A multipart.
            3 | 4 => self.multipart(out, depth),
            // An encapsulated message.
            5 => {
                if !digest_default || self.rng.chance(50) {
                    self.leaf_header(out, "message/rfc822", None);
                }
                out.extend_from_slice(self.eol);
                self.message(out, depth + 1);
            }
            // A part without any header, or a header without the empty line.
            6 => match self.rng.below(3) {
                0 => {
                    out.extend_from_slice(self.eol);
                    self.text_body(out);
                }
                1 => {
                    self.leaf_header(out, "text/html", None);
                    // no empty line: the next boundary follows
                }
                _ => self.text_body(out),
            },
            _ => {
                let encoding = *self.rng.pick(ENCODINGS);
                let ctype = *self.rng.pick(&[
                    "text/plain; charset=utf-8",
                    "application/octet-stream",
                    "text/html",
                    "image/png",
                ]);
                let encoding_header = if self.rng.chance(80) { Some(encoding) } else { None };
                self.leaf_header(out, ctype, encoding_header);
                out.extend_from_slice(self.eol);
                match encoding_header.map(str::to_ascii_lowercase).as_deref() {
                    Some("base64") => self.base64_body(out),
                    Some("quoted-printable") => self.qp_body(out),
                    _ => self.text_body(out),
                }
            }
        }
    }

    fn multipart(&mut self, out: &mut Vec<u8>, depth: usize) {
        let boundary = match (self.rng.below(6), self.boundaries.last()) {
            // clashing with the enclosing multipart's boundary
            (0, Some(b)) => b.clone(),
            // a prefix of the enclosing one
            (1, Some(b)) if b.len() > 3 => b[..b.len() - 2].to_string(),
            _ => format!("=_b{}_{}", depth, self.rng.below(1000)),
        };
        let subtype = *self.rng.pick(&["mixed", "alternative", "digest", "related", "mixed"]);
        let quoted = if self.rng.chance(50) {
            format!("\"{boundary}\"")
        } else {
            boundary.clone()
        };
        self.leaf_header(out, &format!("multipart/{subtype}; boundary={quoted}"), None);
        out.extend_from_slice(self.eol);
        if self.rng.chance(30) {
            self.line(out, "This is a preamble.");
        }
        self.boundaries.push(boundary.clone());
        let parts = self.rng.below(4) + usize::from(self.rng.chance(80));
        for _ in 0..parts {
            let mut delimiter = format!("--{boundary}");
            if self.rng.chance(5) {
                delimiter.push_str("  ");
            }
            self.line(out, &delimiter);
            if self.rng.chance(3) {
                self.line(out, &delimiter); // duplicated boundary line
            }
            self.entity(out, depth + 1, subtype == "digest");
        }
        self.boundaries.pop();
        match self.rng.below(10) {
            0 => {}                                                           // final boundary missing
            1 => self.line(out, &format!("--{boundary}--  ")),                // trailing whitespace
            2 => out.extend_from_slice(format!("--{boundary}--").as_bytes()), // no line end
            _ => self.line(out, &format!("--{boundary}--")),
        }
        if self.rng.chance(20) {
            self.line(out, "epilogue text");
        }
    }

    /// A whole message: top-level header, then an entity body.
    fn message(&mut self, out: &mut Vec<u8>, depth: usize) {
        let eol = self.eol;
        let date = *self.rng.pick(DATES);
        if !date.is_empty() {
            out.extend_from_slice(format!("Date: {date}").as_bytes());
            out.extend_from_slice(eol);
        }
        let subject = {
            let n = 1 + self.rng.below(4);
            self.words(n)
        };
        out.extend_from_slice(
            format!("From: Fuzz {} <f{}@example.net>", self.rng.below(9), self.rng.below(9)).as_bytes(),
        );
        out.extend_from_slice(eol);
        out.extend_from_slice(b"To: alice@example.org");
        out.extend_from_slice(eol);
        if self.rng.chance(80) {
            out.extend_from_slice(format!("Subject: {subject}").as_bytes());
            out.extend_from_slice(eol);
        }
        if self.rng.chance(10) {
            out.extend_from_slice(b"Subject: second subject");
            out.extend_from_slice(eol);
        }
        if self.rng.chance(30) {
            out.extend_from_slice(format!("X-Folded: {}", self.words(3)).as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(format!("\t{}", self.words(2)).as_bytes());
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(b"MIME-Version: 1.0");
        out.extend_from_slice(eol);
        self.entity(out, depth, false);
    }

    /// The next message.
    pub fn generate(&mut self) -> Vec<u8> {
        self.eol = if self.rng.chance(10) { b"\n" } else { b"\r\n" };
        let mut out = Vec::new();
        self.message(&mut out, 0);
        if self.rng.chance(5) {
            // a message that is nothing but header
            out.truncate(out.iter().position(|&c| c == b'\n').map_or(out.len(), |p| p + 1));
        }
        out
    }
}
