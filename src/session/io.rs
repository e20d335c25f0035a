//! The small I/O surface a command handler sees. Handlers take plain
//! session state and `&mut dyn Io`, so a test drives them with a fake
//! (`session::testing`) and the real session with the relay.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::imap::framing::{BufferedCommand, LiteralAnnouncement, ReadCommand};
use crate::imap::response::Status;
use crate::relay::Relay;
use crate::upstream::AppendMessage;

pub use crate::relay::SessionEnd;

/// What a handler returns: `Err` ends the session.
pub type Outcome = Result<(), SessionEnd>;

/// Streams bytes to the client from a blocking thread (FETCH).
pub type Chunks = Box<dyn FnMut(Bytes) -> Result<(), SessionEnd> + Send>;

/// The client side, available in every state.
#[async_trait]
pub trait ClientIo: Send {
    /// Queues bytes for the client, in order with everything else.
    async fn send(&mut self, bytes: Bytes) -> Outcome;
    /// The next line from the client; the idle limit applies.
    async fn read_line(&mut self) -> Result<Bytes, SessionEnd>;
    /// The next line within `wait`, `None` if nothing came (cancel-safe).
    async fn read_line_within(&mut self, wait: Duration) -> Result<Option<Bytes>, SessionEnd>;
    /// The rest of a command after its first line, literals buffered up to
    /// `limit` (the `+` for each is sent).
    async fn read_rest(&mut self, first: Bytes, limit: u64) -> Result<ReadCommand, SessionEnd>;

    /// Sends a status line.
    async fn status(&mut self, status: Status) -> Outcome {
        self.send(Bytes::from(status.encode())).await
    }
}

/// The authenticated session: the client side plus the upstream.
#[async_trait]
pub trait Io: ClientIo {
    /// A handle a blocking thread streams client bytes through.
    fn chunks(&self) -> Chunks;
    /// Whether the upstream asked the client for data (IDLE, SASL): the
    /// client's next line is that data.
    fn take_client_continuation(&mut self) -> bool;
    /// Forwards a line as it is.
    async fn forward_line(&mut self, line: &[u8]) -> Outcome;
    /// Forwards a buffered command as its original bytes.
    async fn forward(&mut self, tag: &Bytes, cmd: &BufferedCommand, idle: bool) -> Outcome;
    /// Streams an APPEND to a real folder, literal by literal.
    async fn stream_append(&mut self, tag: Bytes, first: Bytes, lit: LiteralAnnouncement) -> Outcome;
    /// Lines to write right before the upstream's tagged OK of `tag`.
    fn inject_before_ok(&mut self, tag: Bytes, lines: Bytes);
    /// Waits until the upstream has answered every forwarded command.
    async fn quiet(&mut self) -> Outcome;
    /// Runs a command of the proxy's own upstream; its responses, the
    /// tagged one last.
    async fn upstream(&mut self, command: &str) -> Result<Vec<Bytes>, SessionEnd>;
    /// APPENDs messages upstream; each APPEND's tagged line.
    async fn upstream_append(
        &mut self,
        mailbox: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Result<Vec<Bytes>, SessionEnd>;
    /// How long the upstream has not seen a command.
    fn upstream_idle_for(&self) -> Duration;
    /// An IDLE is in flight (ended by the client's DONE).
    fn idling(&self) -> bool {
        false
    }
    /// Remembers a command's name until its tagged answer (metrics).
    fn track(&mut self, _tag: &Bytes, _name: &'static str) {}
    /// A SELECT or EXAMINE of a real folder goes upstream: forget the
    /// UIDVALIDITY the previous one reported.
    fn forget_uidvalidity(&mut self) {}
    /// The UIDVALIDITY the upstream reported since (see
    /// [`crate::relay::Relay::uidvalidity`]); `None` when unknown.
    fn uidvalidity(&self) -> Option<u32> {
        None
    }
}

#[async_trait]
impl ClientIo for Relay {
    async fn send(&mut self, bytes: Bytes) -> Outcome {
        Relay::send(self, bytes).await
    }

    async fn status(&mut self, status: Status) -> Outcome {
        if let Some(tag) = &status.tag {
            Relay::answered(self, tag.as_bytes(), status.kind);
        }
        self.send(Bytes::from(status.encode())).await
    }

    async fn read_line(&mut self) -> Result<Bytes, SessionEnd> {
        Relay::read_line(self).await
    }

    async fn read_line_within(&mut self, wait: Duration) -> Result<Option<Bytes>, SessionEnd> {
        Relay::read_line_within(self, wait).await
    }

    async fn read_rest(&mut self, first: Bytes, limit: u64) -> Result<ReadCommand, SessionEnd> {
        Relay::read_rest(self, first, limit).await
    }
}

#[async_trait]
impl Io for Relay {
    fn chunks(&self) -> Chunks {
        let chunks = Relay::chunks(self);
        Box::new(move |b| chunks.send_blocking(b))
    }

    fn take_client_continuation(&mut self) -> bool {
        Relay::take_client_continuation(self)
    }

    async fn forward_line(&mut self, line: &[u8]) -> Outcome {
        Relay::forward_line(self, line).await
    }

    async fn forward(&mut self, tag: &Bytes, cmd: &BufferedCommand, idle: bool) -> Outcome {
        Relay::forward(self, tag, cmd, idle).await
    }

    async fn stream_append(&mut self, tag: Bytes, first: Bytes, lit: LiteralAnnouncement) -> Outcome {
        Relay::stream_append(self, tag, first, lit).await
    }

    fn inject_before_ok(&mut self, tag: Bytes, lines: Bytes) {
        Relay::inject_before_ok(self, tag, lines)
    }

    async fn quiet(&mut self) -> Outcome {
        Relay::quiet(self).await
    }

    async fn upstream(&mut self, command: &str) -> Result<Vec<Bytes>, SessionEnd> {
        Relay::own_command(self, command).await
    }

    async fn upstream_append(
        &mut self,
        mailbox: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Result<Vec<Bytes>, SessionEnd> {
        Relay::own_append(self, mailbox, messages).await
    }

    fn upstream_idle_for(&self) -> Duration {
        Relay::upstream_idle_for(self)
    }

    fn forget_uidvalidity(&mut self) {
        Relay::forget_uidvalidity(self)
    }

    fn uidvalidity(&self) -> Option<u32> {
        Relay::uidvalidity(self)
    }

    fn idling(&self) -> bool {
        Relay::idling(self)
    }

    fn track(&mut self, tag: &Bytes, name: &'static str) {
        Relay::track(self, tag.clone(), name);
    }
}

/// What one of the proxy's own upstream commands answered, as
/// [`ask_upstream`] sorts it.
pub struct OwnAnswer {
    /// The untagged responses the caller asked to keep.
    pub ours: Vec<Bytes>,
    /// The tagged completion (`None` if the upstream never sent it).
    pub tagged: Option<Bytes>,
}

impl OwnAnswer {
    /// The upstream answered OK.
    pub fn completed(&self) -> bool {
        self.tagged
            .as_ref()
            .and_then(|t| Status::parse(t))
            .is_some_and(|s| s.is_ok())
    }

    /// The upstream answered, and not OK: its tagged line. (A connection
    /// lost meanwhile ends the session elsewhere.)
    pub fn refusal(&self) -> Option<&Bytes> {
        self.tagged
            .as_ref()
            .filter(|t| !Status::parse(t).is_some_and(|s| s.is_ok()))
    }
}

/// Runs a command of the proxy's own while a real folder is selected:
/// the untagged responses `ours` picks are kept; every other one is news
/// about the selected folder (EXISTS, EXPUNGE, flag changes) and goes to
/// the client as it came, in one write, so nothing the client must know
/// is swallowed.
pub async fn ask_upstream(
    io: &mut dyn Io,
    command: &str,
    ours: impl Fn(&[u8]) -> bool + Send,
) -> Result<OwnAnswer, SessionEnd> {
    let mut answer = OwnAnswer {
        ours: Vec::new(),
        tagged: None,
    };
    let mut news = bytes::BytesMut::new();
    for response in io.upstream(command).await? {
        if crate::imap::response::tag_of(&response) != b"*" {
            answer.tagged = Some(response);
        } else if ours(&response) {
            answer.ours.push(response);
        } else {
            news.extend_from_slice(&response);
        }
    }
    if !news.is_empty() {
        io.send(news.freeze()).await?;
    }
    Ok(answer)
}

/// One command as a handler gets it: the original bytes, and imap-codec's
/// reading of them when it has one (extensions it does not know come as
/// bytes only). The reading is made on first use: a command forwarded as
/// its bytes whose route needs no argument (FETCH, STORE in a real folder)
/// is never decoded.
pub struct Request<'a> {
    pub tag: &'a str,
    /// Upper-cased name; `UID FETCH` and friends include the `UID `.
    pub name: &'a str,
    pub bytes: &'a [u8],
    command: std::sync::OnceLock<Option<imap_codec::imap_types::command::Command<'a>>>,
}

impl<'a> Request<'a> {
    pub fn new(tag: &'a str, name: &'a str, bytes: &'a [u8]) -> Self {
        Self {
            tag,
            name,
            bytes,
            command: std::sync::OnceLock::new(),
        }
    }

    /// imap-codec's reading of the command, if it has one.
    pub fn command(&self) -> Option<&imap_codec::imap_types::command::Command<'a>> {
        self.command
            .get_or_init(|| crate::imap::command::decode(self.bytes))
            .as_ref()
    }

    /// The decoded body, if imap-codec read the command.
    pub fn body(&self) -> Option<&imap_codec::imap_types::command::CommandBody<'_>> {
        self.command().map(|c| &c.body)
    }

    /// The sequence set as the client sent it, for commands that take one
    /// first (`a UID MOVE 4:6 ...`): the word after the command name,
    /// checked to hold only set characters, so it can be passed upstream.
    pub fn set_text(&self) -> Option<&'a str> {
        let words = self.name.split(' ').count();
        let set = self
            .bytes
            .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
            .nth(1 + words)?;
        let ok = !set.is_empty() && set.iter().all(|b| b.is_ascii_digit() || b"*:,".contains(b));
        std::str::from_utf8(set).ok().filter(|_| ok)
    }
}

/// What APPEND decides from its first line, before the message comes.
pub enum Plan {
    /// Stream it to the upstream, literal by literal.
    Stream(crate::imap::framing::LiteralAnnouncement),
    /// Buffer it, literals up to this many bytes, then route it.
    Buffer(u64),
    /// Refuse it before the client sends the message.
    Refuse(crate::imap::response::Status),
}
