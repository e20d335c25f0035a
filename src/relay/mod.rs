//! The authenticated state's transport: two pumps that move original bytes.
//!
//! * The **client side** ([`Relay`], owned by the session task) reads from
//!   the client and writes to the upstream: whole lines, buffered commands,
//!   streamed APPEND literals, and the proxy's own upstream commands. What
//!   to do with a command is the session's business ([`crate::session`]);
//!   the relay only moves bytes and keeps the two directions in step.
//! * The **response pump** ([`pump`], a spawned task) owns the client's
//!   write half and writes upstream responses and the proxy's own, in order.
//!
//! Two tasks, not one: an upstream busy writing a big FETCH response while
//! the client writes a big APPEND would otherwise deadlock the proxy.
//!
//! Synchronising literals: for a buffered command the proxy has already sent
//! the client its `+`, so the upstream's `+` must be swallowed; for a
//! streamed APPEND the upstream's `+` (or its refusal) is what the client
//! waits for. Either way the client side registers an expectation and
//! waits until the response pump has seen the upstream's answer.

mod end;
mod pump;
mod shared;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::Limits;
use crate::imap::framing::{
    literal_announcement, read_command, BufferedCommand, ContinuationSink, FrameError, FrameReader,
    LiteralAnnouncement, ReadCommand,
};
use crate::imap::response::{tag_of, Code, Status};
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::upstream::{append, AppendMessage, Upstream};

pub use end::SessionEnd;

use shared::{Continuation, Diversion, Expectation, Shared};

pub type ClientReader = FrameReader<ReadHalf<ClientStream>>;
type UpstreamReader = FrameReader<ReadHalf<UpstreamStream>>;
type UpstreamWriter = BufWriter<WriteHalf<UpstreamStream>>;

/// Decides which `* LIST`/`* LSUB` responses (whole, literals inline) the
/// client must not see.
pub type HideFn = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// What the client side asks the response pump to write.
enum ToClient {
    Data(Bytes),
    /// Write, then close the connection.
    Bye(Bytes),
}

/// The continuation request the proxy sends for a literal it buffers.
const READY: &[u8] = b"+ Ready for literal data\r\n";

/// After login the `+` for a buffered command's literal goes through the
/// response pump like every other write to the client.
struct ChannelSink(mpsc::Sender<ToClient>);

impl ContinuationSink for ChannelSink {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        self.0
            .send(ToClient::Data(Bytes::from_static(READY)))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// What the upstream offers that the proxy's own commands use.
#[derive(Debug, Clone, Copy)]
struct UpstreamCaps {
    multiappend: bool,
    literal_plus: bool,
}

/// A blocking thread's way to stream bytes to the client (FETCH).
#[derive(Clone)]
pub struct ClientChunks(mpsc::Sender<ToClient>);

impl ClientChunks {
    /// Queues `bytes` for the client; an error when the client is gone.
    pub fn send_blocking(&self, bytes: Bytes) -> Result<(), SessionEnd> {
        self.0
            .blocking_send(ToClient::Data(bytes))
            .map_err(|_| SessionEnd::ClientGone)
    }
}

/// See [`Relay::ended`].
pub struct PumpEnded(Arc<Shared>);

impl PumpEnded {
    pub async fn wait(&self) {
        self.0.wait_ended().await
    }
}

/// The client side of a relayed session.
pub struct Relay {
    reader: ClientReader,
    upstream: UpstreamWriter,
    tx: mpsc::Sender<ToClient>,
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
    limits: Limits,
    caps: UpstreamCaps,
    next_tag: u32,
    /// Last command that went upstream (client's or the proxy's own).
    last_upstream: Instant,
}

fn client_error(e: FrameError) -> SessionEnd {
    match e {
        FrameError::LineTooLong { limit } => SessionEnd::LineTooLong { limit },
        FrameError::UnexpectedEof | FrameError::Io(_) => SessionEnd::ClientGone,
    }
}

fn upstream_error(_: std::io::Error) -> SessionEnd {
    SessionEnd::UpstreamLost
}

impl Relay {
    /// Starts relaying: spawns the response pump. `hide` drops LIST
    /// responses of real folders the session hides.
    pub fn start(
        reader: ClientReader,
        writer: WriteHalf<ClientStream>,
        upstream: Upstream,
        limits: &Limits,
        max_upstream_line: usize,
        hide: HideFn,
    ) -> Self {
        let caps = UpstreamCaps {
            multiappend: upstream.has_capability("MULTIAPPEND"),
            literal_plus: upstream.has_capability("LITERAL+"),
        };
        let (ustream, ubuf) = upstream.reader.into_parts();
        let (urd, uwr) = tokio::io::split(ustream);
        let upstream_reader = FrameReader::from_parts(urd, ubuf, max_upstream_line);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(16);
        let pump = tokio::spawn(
            pump::run(
                upstream_reader,
                writer,
                rx,
                shared.clone(),
                hide,
                Duration::from_secs(limits.upstream_response_timeout_secs),
            )
            .instrument(tracing::Span::current()),
        );
        Self {
            reader,
            upstream: BufWriter::with_capacity(16 * 1024, uwr),
            tx,
            shared,
            pump,
            limits: limits.clone(),
            caps,
            next_tag: 0,
            last_upstream: Instant::now(),
        }
    }

    /// Ends the session: says why (if there is anything to say), then lets
    /// the pump write what is queued, bounded in case the client does not
    /// read.
    pub async fn finish(self, end: SessionEnd) {
        if let Some(bye) = end.bye() {
            let _ = self.tx.send(ToClient::Bye(Bytes::from(bye.encode()))).await;
        }
        let Self { tx, mut pump, .. } = self;
        drop(tx);
        if tokio::time::timeout(Duration::from_secs(5), &mut pump).await.is_err() {
            pump.abort();
        }
    }

    /// A handle that resolves once the response pump has ended (the
    /// upstream or the client went away): the session then has nothing
    /// left to do, whatever it is waiting for.
    pub fn ended(&self) -> PumpEnded {
        PumpEnded(self.shared.clone())
    }

    /// The next line from the client; the idle limit applies.
    pub async fn read_line(&mut self) -> Result<Bytes, SessionEnd> {
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        match self.read_line_within(idle).await? {
            Some(line) => Ok(line),
            None => Err(SessionEnd::ClientIdle),
        }
    }

    /// The next line from the client within `wait`; `None` when nothing
    /// came (reading is cancel-safe: nothing is lost).
    pub async fn read_line_within(&mut self, wait: Duration) -> Result<Option<Bytes>, SessionEnd> {
        match tokio::time::timeout(wait, self.reader.read_line()).await {
            Ok(Ok(Some(line))) => Ok(Some(line)),
            Ok(Ok(None)) => Err(SessionEnd::ClientGone),
            Ok(Err(e)) => Err(client_error(e)),
            Err(_) => Ok(None),
        }
    }

    /// The rest of a command whose first line is `first`, its literals
    /// buffered up to `limit` (the proxy sends the `+`); the idle limit
    /// applies to the whole command.
    pub async fn read_rest(&mut self, first: Bytes, limit: u64) -> Result<ReadCommand, SessionEnd> {
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        let mut sink = ChannelSink(self.tx.clone());
        match tokio::time::timeout(idle, read_command(&mut self.reader, first, limit, &mut sink)).await {
            Ok(r) => r.map_err(client_error),
            Err(_) => Err(SessionEnd::ClientIdle),
        }
    }

    /// Whether the upstream asked the client for more data (IDLE, SASL):
    /// then the client's next line is that data, not a command.
    pub fn take_client_continuation(&self) -> bool {
        self.shared.client_continuation.swap(false, Ordering::AcqRel)
    }

    /// Queues the proxy's own response for the client.
    pub async fn send(&self, bytes: Bytes) -> Result<(), SessionEnd> {
        self.tx
            .send(ToClient::Data(bytes))
            .await
            .map_err(|_| SessionEnd::ClientGone)
    }

    /// A handle for blocking threads that stream to the client.
    pub fn chunks(&self) -> ClientChunks {
        ClientChunks(self.tx.clone())
    }

    async fn flush_if_idle(&mut self) -> Result<(), SessionEnd> {
        if self.reader.buffered() == 0 {
            self.upstream.flush().await.map_err(upstream_error)?;
        }
        Ok(())
    }

    /// Forwards a line as it is (continuation data, or something that is
    /// not a command the proxy can frame: the upstream judges it).
    pub async fn forward_line(&mut self, line: &[u8]) -> Result<(), SessionEnd> {
        self.upstream.write_all(line).await.map_err(upstream_error)?;
        self.flush_if_idle().await
    }

    /// Forwards a buffered command as its original bytes. `idle`: it is an
    /// IDLE (upstream silence is expected until DONE).
    pub async fn forward(&mut self, tag: &Bytes, cmd: &BufferedCommand, idle: bool) -> Result<(), SessionEnd> {
        self.shared.started(idle);
        self.last_upstream = Instant::now();
        let mut start = 0;
        for &split in &cmd.sync_splits {
            let part = cmd.bytes.get(start..split).unwrap_or_default();
            if self.send_and_expect(tag, part, false).await? == Continuation::Rejected {
                return Ok(());
            }
            start = split;
        }
        let rest = cmd.bytes.get(start..).unwrap_or_default();
        self.upstream.write_all(rest).await.map_err(upstream_error)?;
        self.flush_if_idle().await
    }

    /// Registers lines to write just before the tagged OK of `tag`.
    pub fn inject_before_ok(&self, tag: Bytes, lines: Bytes) {
        self.shared.inject(tag, lines);
    }

    /// Waits until every forwarded command is answered, so the proxy's own
    /// answers never interleave with the upstream's.
    pub async fn quiet(&mut self) -> Result<(), SessionEnd> {
        self.upstream.flush().await.map_err(upstream_error)?;
        self.shared.quiesce().await;
        Ok(())
    }

    /// A SELECT or EXAMINE goes upstream: what the folder selected before
    /// reported no longer holds.
    pub fn forget_uidvalidity(&self) {
        self.shared.forget_uidvalidity();
    }

    /// The UIDVALIDITY the upstream reported since the last
    /// [`Relay::forget_uidvalidity`], as every successful SELECT and EXAMINE
    /// reports it (RFC 3501 6.3.1). Once the relay is quiet, the selected
    /// folder's: the capture at expunge then asks no STATUS.
    pub fn uidvalidity(&self) -> Option<u32> {
        self.shared.uidvalidity()
    }

    /// Remembers a command's name for the metrics of its result.
    pub fn track(&self, tag: Bytes, name: &'static str) {
        self.shared.track(tag, name);
    }

    /// Counts the proxy's own tagged answer of a tracked command.
    pub fn answered(&self, tag: &[u8], kind: crate::imap::response::Kind) {
        self.shared.answered(tag, kind);
    }

    /// An IDLE is in flight.
    pub fn idling(&self) -> bool {
        self.shared.idling()
    }

    /// How long the upstream has not seen a command.
    pub fn upstream_idle_for(&self) -> Duration {
        self.last_upstream.elapsed()
    }

    /// Registers an expectation, sends `bytes`, and waits for the upstream's
    /// answer to the sync literal they announce.
    async fn send_and_expect(
        &mut self,
        tag: &Bytes,
        bytes: &[u8],
        forward_plus: bool,
    ) -> Result<Continuation, SessionEnd> {
        let (reply, wait) = oneshot::channel();
        self.shared.expect(Expectation {
            tag: tag.clone(),
            forward_plus,
            reply,
        });
        self.upstream.write_all(bytes).await.map_err(upstream_error)?;
        self.upstream.flush().await.map_err(upstream_error)?;
        // The response pump always answers or drops the sender when it ends.
        Ok(wait.await.unwrap_or(Continuation::Rejected))
    }

    /// Streams an APPEND to a real folder: each line as it comes, each
    /// literal in chunks, so a message of up to `limits.max_message_size`
    /// passes in bounded memory. A message over the limit is refused before
    /// it is sent (synchronising literal), or ends the session.
    pub async fn stream_append(
        &mut self,
        tag: Bytes,
        first: Bytes,
        first_lit: LiteralAnnouncement,
    ) -> Result<(), SessionEnd> {
        let mut line = first;
        let mut lit = first_lit;
        let mut started = false;
        loop {
            if lit.len > self.limits.max_message_size {
                let limit = self.limits.max_message_size;
                let t = String::from_utf8_lossy(&tag).into_owned();
                let text = format!("Message too large (limit {limit} bytes)");
                if !started && lit.sync {
                    return self
                        .send(Bytes::from(Status::no(&t, Code::TooBig, text).encode()))
                        .await;
                }
                // Part of the command is upstream already, or the literal is
                // on its way: the only clean way out is to close.
                let bad = Status::bad(&t, text).with_code(Code::TooBig);
                self.send(Bytes::from(bad.encode())).await?;
                return Err(SessionEnd::LiteralUnskippable);
            }
            if !started {
                self.shared.started(false);
                self.last_upstream = Instant::now();
                started = true;
            }
            if lit.sync {
                if self.send_and_expect(&tag, &line, true).await? == Continuation::Rejected {
                    return Ok(());
                }
            } else {
                self.upstream.write_all(&line).await.map_err(upstream_error)?;
            }
            let mut remaining = lit.len;
            let idle = Duration::from_secs(self.limits.idle_timeout_secs);
            while remaining > 0 {
                let chunk = match tokio::time::timeout(idle, self.reader.read_literal_chunk(remaining)).await {
                    Ok(chunk) => chunk.map_err(client_error)?,
                    Err(_) => return Err(SessionEnd::ClientIdle),
                };
                remaining -= chunk.len() as u64;
                self.upstream.write_all(&chunk).await.map_err(upstream_error)?;
                // A slow upload is not a silent upstream.
                self.shared.progress();
            }
            // The client answered the upstream's `+` with the literal.
            self.shared.client_continuation.store(false, Ordering::Release);
            line = self.read_line().await?;
            match literal_announcement(&line) {
                Some(next) => lit = next,
                None => {
                    self.upstream.write_all(&line).await.map_err(upstream_error)?;
                    return self.flush_if_idle().await;
                }
            }
        }
    }

    /// A tag for the proxy's own upstream commands (never a client's: a
    /// client reusing it would only confuse itself).
    fn proxy_tag(&mut self) -> String {
        self.next_tag += 1;
        format!("itm-p{}", self.next_tag)
    }

    /// Starts a command of the proxy's own on the upstream connection:
    /// registers the diversion of its responses. Call [`Self::quiet`] first.
    fn begin_own(&mut self, tag: &str) -> mpsc::UnboundedReceiver<Bytes> {
        self.last_upstream = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut d) = self.shared.divert.lock() {
            *d = Some(Diversion {
                tag: Bytes::copy_from_slice(tag.as_bytes()),
                tx,
            });
        }
        self.shared.started(false);
        rx
    }

    /// Ends the proxy's command and collects its responses; the last one is
    /// the tagged completion (absent if the upstream went away).
    async fn finish_own(&mut self, mut rx: mpsc::UnboundedReceiver<Bytes>) -> Result<Vec<Bytes>, SessionEnd> {
        self.upstream.flush().await.map_err(upstream_error)?;
        let mut out = Vec::new();
        while let Some(r) = rx.recv().await {
            out.push(r);
        }
        Ok(out)
    }

    /// Runs a one-line command of the proxy's own (e.g. `UNSELECT`) and
    /// returns its responses, the tagged one last.
    pub async fn own_command(&mut self, command: &str) -> Result<Vec<Bytes>, SessionEnd> {
        self.quiet().await?;
        let tag = self.proxy_tag();
        let rx = self.begin_own(&tag);
        let line = format!("{tag} {command}\r\n");
        self.upstream.write_all(line.as_bytes()).await.map_err(upstream_error)?;
        self.finish_own(rx).await
    }

    /// APPENDs messages to a real folder on the session's upstream
    /// connection (one MULTIAPPEND where the upstream has it, else one
    /// APPEND per message). Returns each APPEND's tagged line; stops at the
    /// first refusal.
    pub async fn own_append(
        &mut self,
        mailbox: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Result<Vec<Bytes>, SessionEnd> {
        self.quiet().await?;
        let mut tagged = Vec::new();
        for group in append::groups(messages, self.caps.multiappend) {
            let tag = self.proxy_tag();
            let rx = self.begin_own(&tag);
            let parts = append::command(&tag, mailbox, group, self.caps.literal_plus);
            let last = parts.len().saturating_sub(1);
            let tag_bytes = Bytes::copy_from_slice(tag.as_bytes());
            for (i, part) in parts.iter().enumerate() {
                if i == last {
                    self.upstream.write_all(part).await.map_err(upstream_error)?;
                } else if self.send_and_expect(&tag_bytes, part, false).await? == Continuation::Rejected {
                    break;
                }
            }
            let responses = self.finish_own(rx).await?;
            let line = responses
                .into_iter()
                .rfind(|r| tag_of(r) == tag.as_bytes())
                .ok_or(SessionEnd::UpstreamLost)?;
            let ok = Status::parse(&line).is_some_and(|s| s.is_ok());
            tagged.push(line);
            if !ok {
                break;
            }
        }
        Ok(tagged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::stream::MaybeTls;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// Two ends of a loopback connection.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (near, far) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (near.expect("connect"), far.expect("accept").0)
    }

    /// Reads from `s` until `end` has arrived.
    async fn read_until(s: &mut TcpStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(end.len()).any(|w| w == end) {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
        got
    }

    /// A capture at expunge asks no STATUS: the relay keeps the
    /// UIDVALIDITY the upstream's SELECT answer reported, passes that
    /// answer on unchanged, and forgets it when the next SELECT goes.
    #[tokio::test]
    async fn the_uidvalidity_a_select_reports_is_kept_until_the_next_select() {
        let (mut client, proxy_client) = pair().await;
        let (proxy_upstream, mut server) = pair().await;
        let (rd, wr) = tokio::io::split(MaybeTls::Plain(proxy_client));
        let upstream = Upstream::new(FrameReader::new(MaybeTls::Plain(proxy_upstream), 8192));
        let mut relay = Relay::start(
            FrameReader::new(rd, 8192),
            wr,
            upstream,
            &Limits::default(),
            8192,
            Box::new(|_| false),
        );
        assert_eq!(relay.uidvalidity(), None);
        relay.forward_line(b"a SELECT INBOX\r\n").await.expect("forward");
        assert_eq!(read_until(&mut server, b"\r\n").await, b"a SELECT INBOX\r\n");
        let answer: &[u8] = b"* 3 EXISTS\r\n* OK [UIDVALIDITY 1764000000] UIDs valid\r\n* OK [UIDNEXT 4] next\r\na OK [READ-WRITE] done\r\n";
        server.write_all(answer).await.expect("answer");
        assert_eq!(read_until(&mut client, b"a OK [READ-WRITE] done\r\n").await, answer);
        assert_eq!(relay.uidvalidity(), Some(1764000000));
        relay.forget_uidvalidity();
        assert_eq!(relay.uidvalidity(), None);
        // A failed SELECT reports none: nothing is remembered.
        relay.forward_line(b"b SELECT Nope\r\n").await.expect("forward");
        read_until(&mut server, b"\r\n").await;
        server
            .write_all(b"b NO [NONEXISTENT] Mailbox doesn't exist\r\n")
            .await
            .expect("answer");
        read_until(&mut client, b"b NO").await;
        assert_eq!(relay.uidvalidity(), None);
    }
}
