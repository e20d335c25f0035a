//! IMAP framing: where one line, one literal and therefore one command or
//! response ends. The proxy frames both directions with this so it can
//! forward the original bytes while always knowing the message boundaries,
//! and stream literals of any size without holding them in memory.

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A literal announced at the end of a line: `{N}`, `{N+}` or `~{N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiteralAnnouncement {
    /// Number of octets that follow the line.
    pub len: u64,
    /// `{N}`: the sender waits for a `+` continuation request.
    pub sync: bool,
    /// `~{N}` (RFC 3516 literal8).
    pub binary: bool,
}

/// Finds the literal announced at the end of `line` (with or without CRLF).
pub fn literal_announcement(line: &[u8]) -> Option<LiteralAnnouncement> {
    let line = strip_eol(line);
    let inner = line.strip_suffix(b"}")?;
    let open = memchr::memrchr(b'{', inner)?;
    let mut digits = &inner[open + 1..];
    let mut sync = true;
    if let Some(d) = digits.strip_suffix(b"+").or_else(|| digits.strip_suffix(b"-")) {
        digits = d;
        sync = false;
    }
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let binary = open > 0 && inner[open - 1] == b'~';
    Some(LiteralAnnouncement { len, sync, binary })
}

/// The line without its trailing CRLF or LF.
pub fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Why reading a frame failed.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("connection closed in the middle of a message")]
    UnexpectedEof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

const READ_CHUNK: usize = 16 * 1024;
/// Largest piece of a literal handed out at once.
pub const LITERAL_CHUNK: usize = 64 * 1024;

/// Buffered reader that hands out whole lines and literal chunks.
///
/// Every `read_*` method keeps its progress in `self`, so it is cancel-safe
/// (it can sit in a `tokio::select!` without losing bytes).
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_line: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(1024),
            max_line,
        }
    }

    /// Bytes received but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Drops everything buffered (after STARTTLS, nothing sent in clear text
    /// before the handshake may be taken as a command).
    pub fn discard_buffer(&mut self) {
        self.buf.clear();
    }

    /// The underlying stream, e.g. to write to it before it is split.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives the reader back, with whatever was buffered.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// Continues reading from `inner` after `buffered` (e.g. after a split).
    pub fn from_parts(inner: R, buf: BytesMut, max_line: usize) -> Self {
        Self { inner, buf, max_line }
    }

    async fn fill(&mut self) -> Result<usize, std::io::Error> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        self.inner.read_buf(&mut self.buf).await
    }

    /// Next line including its line ending; `None` on a clean end of stream.
    pub async fn read_line(&mut self) -> Result<Option<Bytes>, FrameError> {
        let mut searched = 0;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..]) {
                let end = searched + i + 1;
                if end > self.max_line {
                    return Err(FrameError::LineTooLong { limit: self.max_line });
                }
                return Ok(Some(self.buf.split_to(end).freeze()));
            }
            searched = self.buf.len();
            if searched > self.max_line {
                return Err(FrameError::LineTooLong { limit: self.max_line });
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::UnexpectedEof)
                };
            }
        }
    }

    /// Up to `remaining` (and at most [`LITERAL_CHUNK`]) bytes of a literal.
    pub async fn read_literal_chunk(&mut self, remaining: u64) -> Result<Bytes, FrameError> {
        if remaining == 0 {
            return Ok(Bytes::new());
        }
        if self.buf.is_empty() && self.fill().await? == 0 {
            return Err(FrameError::UnexpectedEof);
        }
        let n = (self.buf.len() as u64).min(remaining).min(LITERAL_CHUNK as u64) as usize;
        Ok(self.buf.split_to(n).freeze())
    }

    /// A whole literal of `len` bytes appended to `out` (for small literals).
    pub async fn read_literal_into(&mut self, len: u64, out: &mut BytesMut) -> Result<(), FrameError> {
        let mut remaining = len;
        while remaining > 0 {
            let chunk = self.read_literal_chunk(remaining).await?;
            remaining -= chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        Ok(())
    }
}

/// A complete command (lines and literals) held in memory.
#[derive(Debug, Clone)]
pub struct BufferedCommand {
    /// The original bytes, exactly as the client sent them.
    pub bytes: Bytes,
    /// Offsets just after each line that announced a synchronising literal:
    /// whoever forwards the command must wait for a `+` at each of them.
    pub sync_splits: Vec<usize>,
}

/// Result of [`read_command`].
#[derive(Debug)]
pub enum ReadCommand {
    Complete(BufferedCommand),
    /// A literal over the limit was announced. For a synchronising literal
    /// the client sends nothing more; a non-synchronising one is already on
    /// its way, so the connection cannot be resynchronised.
    TooBig {
        sync: bool,
        limit: u64,
    },
}

/// Whoever can send the client a `+` continuation request.
pub trait ContinuationSink {
    fn send_continuation(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// Reads the rest of a command whose first line is `first`, buffering every
/// literal (their sum at most `limit` bytes). Before each synchronising
/// literal, `sink` sends the client its `+`.
pub async fn read_command<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    first: Bytes,
    limit: u64,
    sink: &mut impl ContinuationSink,
) -> Result<ReadCommand, FrameError> {
    let Some(mut lit) = literal_announcement(&first) else {
        return Ok(ReadCommand::Complete(BufferedCommand {
            bytes: first,
            sync_splits: Vec::new(),
        }));
    };
    let mut out = BytesMut::from(&first[..]);
    let mut sync_splits = Vec::new();
    let mut total: u64 = 0;
    loop {
        total = total.saturating_add(lit.len);
        if total > limit {
            return Ok(ReadCommand::TooBig { sync: lit.sync, limit });
        }
        if lit.sync {
            sync_splits.push(out.len());
            sink.send_continuation().await?;
        }
        reader.read_literal_into(lit.len, &mut out).await?;
        let line = reader.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        if out.len() + line.len() > (limit as usize).saturating_add(reader.max_line) {
            return Err(FrameError::LineTooLong { limit: reader.max_line });
        }
        out.extend_from_slice(&line);
        match literal_announcement(&line) {
            Some(next) => lit = next,
            None => {
                return Ok(ReadCommand::Complete(BufferedCommand {
                    bytes: out.freeze(),
                    sync_splits,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements() {
        assert_eq!(
            literal_announcement(b"A1 APPEND INBOX {310}\r\n"),
            Some(LiteralAnnouncement {
                len: 310,
                sync: true,
                binary: false
            })
        );
        assert_eq!(
            literal_announcement(b"A1 LOGIN {5+}\r\n"),
            Some(LiteralAnnouncement {
                len: 5,
                sync: false,
                binary: false
            })
        );
        assert_eq!(
            literal_announcement(b"A APPEND INBOX ~{12}\r\n"),
            Some(LiteralAnnouncement {
                len: 12,
                sync: true,
                binary: true
            })
        );
        assert_eq!(
            literal_announcement(b"* 1 FETCH (BODY[] {0}\r\n").map(|l| l.len),
            Some(0)
        );
        assert_eq!(literal_announcement(b"A1 SEARCH SUBJECT \"{5}\"\r\n"), None);
        assert_eq!(literal_announcement(b"A1 NOOP\r\n"), None);
        assert_eq!(literal_announcement(b"A1 X {}\r\n"), None);
        assert_eq!(literal_announcement(b"A1 X {1a}\r\n"), None);
        assert_eq!(literal_announcement(b"A1 X {99999999999999999999}\r\n"), None);
    }

    #[tokio::test]
    async fn lines_and_literals_in_small_reads() {
        let data: &[u8] = b"* 1 FETCH (BODY[] {5}\r\nhello)\r\nA OK done\r\n";
        let (mut tx, rx) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(data).await.unwrap();
        });
        let mut r = FrameReader::new(rx, 100);
        let line = r.read_line().await.unwrap().unwrap();
        assert_eq!(&line[..], b"* 1 FETCH (BODY[] {5}\r\n");
        let lit = literal_announcement(&line).unwrap();
        let mut body = BytesMut::new();
        r.read_literal_into(lit.len, &mut body).await.unwrap();
        assert_eq!(&body[..], b"hello");
        assert_eq!(&r.read_line().await.unwrap().unwrap()[..], b")\r\n");
        assert_eq!(&r.read_line().await.unwrap().unwrap()[..], b"A OK done\r\n");
        assert!(r.read_line().await.unwrap().is_none());
        writer.await.unwrap();
    }

    struct Counter(u32);
    impl ContinuationSink for Counter {
        async fn send_continuation(&mut self) -> std::io::Result<()> {
            self.0 += 1;
            Ok(())
        }
    }

    #[tokio::test]
    async fn whole_command_with_literals() {
        let mut r = FrameReader::new(&b"alice {2+}\r\npw\r\nnext"[..], 100);
        let mut plus = Counter(0);
        let first = Bytes::from_static(b"a LOGIN {5}\r\n");
        let got = read_command(&mut r, first, 100, &mut plus).await.unwrap();
        let ReadCommand::Complete(cmd) = got else {
            panic!("complete")
        };
        assert_eq!(&cmd.bytes[..], b"a LOGIN {5}\r\nalice {2+}\r\npw\r\n");
        assert_eq!(cmd.sync_splits, vec![13]);
        assert_eq!(
            &r.read_line().await.unwrap_err().to_string()[..],
            "connection closed in the middle of a message"
        );
        assert_eq!(plus.0, 1);
        let mut r = FrameReader::new(&b""[..], 100);
        let big = Bytes::from_static(b"a X {101}\r\n");
        let got = read_command(&mut r, big, 100, &mut Counter(0)).await.unwrap();
        assert!(matches!(got, ReadCommand::TooBig { sync: true, limit: 100 }));
    }

    #[tokio::test]
    async fn too_long_line_and_truncated_stream() {
        let mut r = FrameReader::new(&b"0123456789abcdef\r\n"[..], 8);
        assert!(matches!(r.read_line().await, Err(FrameError::LineTooLong { limit: 8 })));
        let mut r = FrameReader::new(&b"A1 NOO"[..], 100);
        assert!(matches!(r.read_line().await, Err(FrameError::UnexpectedEof)));
        let mut r = FrameReader::new(&b"abc"[..], 100);
        assert!(matches!(r.read_literal_chunk(10).await, Ok(b) if &b[..] == b"abc"));
        assert!(matches!(r.read_literal_chunk(7).await, Err(FrameError::UnexpectedEof)));
    }
}
