//! The authenticated state: two pumps that relay original bytes.
//!
//! * The **client pump** (this task) reads whole commands from the client,
//!   routes them ([`Router`]) and forwards them upstream, or answers them
//!   locally. APPEND to a real folder is streamed, literal and all, so a
//!   message of any allowed size passes in bounded memory.
//! * The **response pump** (a spawned task) owns the client's write half. It
//!   writes upstream responses (streaming literals), the proxy's own
//!   responses (sent to it over a channel), and filters capability lists.
//!
//! Two tasks, not one: an upstream busy writing a big FETCH response while
//! the client writes a big APPEND would otherwise deadlock the proxy.
//!
//! Synchronising literals: for a buffered command the proxy has already sent
//! the client its `+`, so the upstream's `+` must be swallowed; for a
//! streamed APPEND the upstream's `+` (or its refusal) is what the client
//! waits for. Either way the client pump registers an [`Expectation`] and
//! waits until the response pump has seen the upstream's answer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use imap_codec::imap_types::command::CommandBody;
use tokio::io::{AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, warn, Instrument};

use crate::config::Limits;
use crate::imap::capability;
use crate::imap::command::{decode, CommandHead};
use crate::imap::framing::{
    literal_announcement, read_command, strip_eol, BufferedCommand, ContinuationSink, FrameError, FrameReader,
    LiteralAnnouncement, ReadCommand,
};

use super::local;
use super::route::{Route, Router};
use super::session::Ctx;
use super::stream::{ClientStream, UpstreamStream};
use super::upstream::Upstream;

type ClientReader = FrameReader<ReadHalf<ClientStream>>;
type UpstreamReader = FrameReader<ReadHalf<UpstreamStream>>;
type UpstreamWriter = BufWriter<WriteHalf<UpstreamStream>>;

/// What the client pump asks the response pump to write.
enum ToClient {
    Data(Bytes),
    /// Write, then close the connection.
    Bye(Bytes),
}

/// After login the `+` for a buffered command's literal goes through the
/// response pump like every other write to the client.
struct ChannelSink(mpsc::Sender<ToClient>);

impl ContinuationSink for ChannelSink {
    async fn send_continuation(&mut self) -> std::io::Result<()> {
        self.0
            .send(ToClient::Data(Bytes::from_static(b"+ Ready for literal data\r\n")))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

/// The upstream's answer to a command line announcing a sync literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuation {
    Continue,
    Rejected,
}

struct Expectation {
    tag: Bytes,
    /// Relay the upstream's `+` to the client (streamed APPEND) or swallow it.
    forward_plus: bool,
    reply: oneshot::Sender<Continuation>,
}

/// State both pumps look at.
#[derive(Default)]
struct Shared {
    expect: Mutex<Option<Expectation>>,
    /// The upstream sent a `+` the client must answer (IDLE, extensions):
    /// the client's next line is continuation data, not a command.
    client_continuation: AtomicBool,
    /// Forwarded commands whose tagged response has not come back.
    inflight: AtomicUsize,
    quiet: Notify,
    /// An IDLE is in flight: upstream silence is expected.
    idling: AtomicBool,
    /// Last sign of life of the exchange (an upstream byte, or client data
    /// forwarded while a command is in flight).
    progress: Mutex<Option<Instant>>,
    /// Wakes the response pump to arm its upstream timeout.
    armed: Notify,
}

impl Shared {
    fn take_expectation(&self) -> Option<Expectation> {
        self.expect.lock().ok().and_then(|mut e| e.take())
    }

    fn take_expectation_for(&self, tag: &[u8]) -> Option<Expectation> {
        let mut guard = self.expect.lock().ok()?;
        if guard.as_ref().is_some_and(|e| e.tag == tag) {
            guard.take()
        } else {
            None
        }
    }

    fn progress(&self) {
        if let Ok(mut p) = self.progress.lock() {
            *p = Some(Instant::now());
        }
    }

    /// A command goes upstream.
    fn started(&self, idle: bool) {
        if self.inflight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.progress();
            self.armed.notify_one();
        }
        if idle {
            self.idling.store(true, Ordering::Release);
        }
    }

    /// When the upstream has been silent too long while a command waits.
    fn deadline(&self, limit: Duration) -> Option<Instant> {
        if self.inflight.load(Ordering::Acquire) == 0 || self.idling.load(Ordering::Acquire) {
            return None;
        }
        let since = self.progress.lock().ok().and_then(|p| *p)?;
        Some(since + limit)
    }

    fn tagged_done(&self) {
        self.idling.store(false, Ordering::Release);
        let prev = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| Some(n.saturating_sub(1)))
            .unwrap_or(0);
        if prev <= 1 {
            self.quiet.notify_waiters();
        }
    }

    /// Waits until every forwarded command is answered, so the proxy's own
    /// answers never interleave with the upstream's.
    async fn quiesce(&self) {
        loop {
            let notified = self.quiet.notified();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Why the client pump stopped.
enum End {
    /// The client closed or vanished; nothing more to say.
    Gone,
    /// Say this, then close.
    Bye(Bytes),
}

/// Relays until either side ends.
pub async fn run(
    ctx: &Ctx,
    client_reader: ClientReader,
    client_writer: WriteHalf<ClientStream>,
    upstream: Upstream,
    router: Router,
) {
    let (ustream, ubuf) = upstream.reader.into_parts();
    let (urd, uwr) = tokio::io::split(ustream);
    let upstream_reader = FrameReader::from_parts(urd, ubuf, ctx.connector.max_line());
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel(16);
    let mut pump = tokio::spawn(
        response_pump(
            upstream_reader,
            client_writer,
            rx,
            shared.clone(),
            router.clone(),
            Duration::from_secs(ctx.config.limits.upstream_response_timeout_secs),
        )
        .instrument(tracing::Span::current()),
    );
    let mut client = ClientPump {
        reader: client_reader,
        upstream: BufWriter::with_capacity(16 * 1024, uwr),
        tx,
        shared,
        router,
        limits: ctx.config.limits.clone(),
    };
    tokio::select! {
        end = client.run() => {
            if let End::Bye(bye) = end {
                let _ = client.tx.send(ToClient::Bye(bye)).await;
            }
            drop(client);
            // Let the pump write what is queued; bounded in case the client
            // does not read.
            if tokio::time::timeout(Duration::from_secs(5), &mut pump).await.is_err() {
                pump.abort();
            }
        }
        _ = &mut pump => {}
    }
    debug!("session ended");
}

struct ClientPump {
    reader: ClientReader,
    upstream: UpstreamWriter,
    tx: mpsc::Sender<ToClient>,
    shared: Arc<Shared>,
    router: Router,
    limits: Limits,
}

fn bye(text: &str) -> End {
    End::Bye(Bytes::from(format!("* BYE {text}\r\n")))
}

impl ClientPump {
    async fn run(&mut self) -> End {
        match self.run_inner().await {
            Ok(end) => end,
            Err(FrameError::LineTooLong { limit }) => bye(&format!("Command line too long (limit {limit} bytes)")),
            Err(FrameError::UnexpectedEof) => {
                debug!("client vanished in the middle of a command");
                End::Gone
            }
            Err(FrameError::Io(e)) => {
                debug!(error = %e, "connection error");
                bye("[UNAVAILABLE] Connection to the mail server failed")
            }
        }
    }

    async fn read_line(&mut self) -> Result<Option<Bytes>, FrameError> {
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        match tokio::time::timeout(idle, self.reader.read_line()).await {
            Ok(r) => r,
            Err(_) => Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle",
            ))),
        }
    }

    async fn to_client(&self, bytes: impl Into<Bytes>) -> Result<(), FrameError> {
        self.tx
            .send(ToClient::Data(bytes.into()))
            .await
            .map_err(|_| FrameError::UnexpectedEof)
    }

    async fn flush_if_idle(&mut self) -> Result<(), FrameError> {
        if self.reader.buffered() == 0 {
            self.upstream.flush().await?;
        }
        Ok(())
    }

    async fn run_inner(&mut self) -> Result<End, FrameError> {
        loop {
            let line = match self.read_line().await {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(End::Gone),
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Ok(bye("Autologout; idle for too long"));
                }
                Err(e) => return Err(e),
            };
            // Continuation data the upstream asked for (IDLE's DONE, SASL).
            if self.shared.client_continuation.swap(false, Ordering::AcqRel)
                || strip_eol(&line).eq_ignore_ascii_case(b"DONE")
            {
                self.upstream.write_all(&line).await?;
                self.flush_if_idle().await?;
                continue;
            }
            let Some(head) = CommandHead::parse(&line) else {
                // Not a command we can frame by tag: let the upstream judge it.
                self.upstream.write_all(&line).await?;
                self.flush_if_idle().await?;
                continue;
            };
            let tag = Bytes::copy_from_slice(head.tag);
            let is_append = head.name == "APPEND";
            if is_append {
                if let (Some(lit), Some(mailbox)) = (literal_announcement(&line), head.first_astring()) {
                    if self.router.route_mailbox(&mailbox) == Route::Forward {
                        if let Some(end) = self.stream_append(tag, line, lit).await? {
                            return Ok(end);
                        }
                        continue;
                    }
                }
            }
            let limit = if is_append {
                self.limits.max_message_size
            } else {
                self.limits.max_literal_size
            };
            let mut sink = ChannelSink(self.tx.clone());
            let read = read_command(&mut self.reader, line, limit, &mut sink).await?;
            let cmd = match read {
                ReadCommand::Complete(cmd) => cmd,
                ReadCommand::TooBig { sync, limit } => {
                    let r = format!(
                        "{} {} [TOOBIG] Literal too large (limit {limit} bytes)\r\n",
                        String::from_utf8_lossy(&tag),
                        if sync { "NO" } else { "BAD" }
                    );
                    self.to_client(r).await?;
                    if !sync {
                        return Ok(bye("Cannot skip a non-synchronising literal"));
                    }
                    continue;
                }
            };
            let (route, answer, idle) = match decode(&cmd.bytes) {
                Some(c) => match self.router.route(&c, false) {
                    Route::Local => (Route::Local, Some(local::answer(&c)), false),
                    Route::Forward => (Route::Forward, None, matches!(c.body, CommandBody::Idle)),
                },
                None => (Route::Forward, None, false),
            };
            match (route, answer) {
                (Route::Local, Some(answer)) => {
                    self.upstream.flush().await?;
                    self.shared.quiesce().await;
                    self.to_client(answer).await?;
                }
                _ => self.forward(tag, cmd, idle).await?,
            }
        }
    }

    /// Registers an expectation, sends `bytes`, and waits for the upstream's
    /// answer to the sync literal they announce.
    async fn send_and_expect(
        &mut self,
        tag: &Bytes,
        bytes: &[u8],
        forward_plus: bool,
    ) -> Result<Continuation, FrameError> {
        let (reply, wait) = oneshot::channel();
        if let Ok(mut e) = self.shared.expect.lock() {
            *e = Some(Expectation {
                tag: tag.clone(),
                forward_plus,
                reply,
            });
        }
        self.upstream.write_all(bytes).await?;
        self.upstream.flush().await?;
        // The response pump always answers or drops the sender when it ends.
        Ok(wait.await.unwrap_or(Continuation::Rejected))
    }

    /// Forwards a buffered command as its original bytes.
    async fn forward(&mut self, tag: Bytes, cmd: BufferedCommand, idle: bool) -> Result<(), FrameError> {
        self.shared.started(idle);
        let mut start = 0;
        for &split in &cmd.sync_splits {
            if self.send_and_expect(&tag, &cmd.bytes[start..split], false).await? == Continuation::Rejected {
                return Ok(());
            }
            start = split;
        }
        self.upstream.write_all(&cmd.bytes[start..]).await?;
        self.flush_if_idle().await
    }

    /// Streams an APPEND to a real folder: each line as it comes, each
    /// literal in chunks. Returns `Some(end)` when the session must end.
    async fn stream_append(
        &mut self,
        tag: Bytes,
        first: Bytes,
        first_lit: LiteralAnnouncement,
    ) -> Result<Option<End>, FrameError> {
        let mut line = first;
        let mut lit = first_lit;
        let mut started = false;
        loop {
            if lit.len > self.limits.max_message_size {
                let limit = self.limits.max_message_size;
                let t = String::from_utf8_lossy(&tag);
                if !started && lit.sync {
                    self.to_client(format!("{t} NO [TOOBIG] Message too large (limit {limit} bytes)\r\n"))
                        .await?;
                    return Ok(None);
                }
                // Part of the command is upstream already, or the literal is
                // on its way: the only clean way out is to close.
                self.to_client(format!("{t} BAD [TOOBIG] Message too large (limit {limit} bytes)\r\n"))
                    .await?;
                return Ok(Some(bye("Cannot skip an oversized literal")));
            }
            if !started {
                self.shared.started(false);
                started = true;
            }
            if lit.sync {
                if self.send_and_expect(&tag, &line, true).await? == Continuation::Rejected {
                    return Ok(None);
                }
            } else {
                self.upstream.write_all(&line).await?;
            }
            let mut remaining = lit.len;
            let idle = Duration::from_secs(self.limits.idle_timeout_secs);
            while remaining > 0 {
                let chunk = match tokio::time::timeout(idle, self.reader.read_literal_chunk(remaining)).await {
                    Ok(chunk) => chunk?,
                    Err(_) => return Ok(Some(bye("Autologout; idle for too long"))),
                };
                remaining -= chunk.len() as u64;
                self.upstream.write_all(&chunk).await?;
                // A slow upload is not a silent upstream.
                self.shared.progress();
            }
            // The client answered the upstream's `+` with the literal.
            self.shared.client_continuation.store(false, Ordering::Release);
            line = self.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
            match literal_announcement(&line) {
                Some(next) => lit = next,
                None => {
                    self.upstream.write_all(&line).await?;
                    self.flush_if_idle().await?;
                    return Ok(None);
                }
            }
        }
    }
}

/// Writes upstream responses and the proxy's own to the client, in order.
async fn response_pump(
    mut up: UpstreamReader,
    client: WriteHalf<ClientStream>,
    mut rx: mpsc::Receiver<ToClient>,
    shared: Arc<Shared>,
    router: Router,
    response_timeout: Duration,
) {
    let mut out = BufWriter::with_capacity(16 * 1024, client);
    let mut state = PumpState {
        upstream_said_bye: false,
        router,
        hidden_logged: false,
    };
    loop {
        let deadline = shared.deadline(response_timeout);
        let silent_upstream = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        let step = tokio::select! {
            biased;
            // A command went upstream: re-arm the timeout.
            _ = shared.armed.notified() => Ok(true),
            _ = silent_upstream => {
                warn!(secs = response_timeout.as_secs(), "upstream silent while a command waits");
                let _ = out.write_all(b"* BYE [UNAVAILABLE] The mail server is not responding\r\n").await;
                Ok(false)
            }
            msg = rx.recv() => match msg {
                Some(ToClient::Data(b)) => out.write_all(&b).await.map(|_| true).map_err(FrameError::from),
                Some(ToClient::Bye(b)) => {
                    let _ = out.write_all(&b).await;
                    Ok(false)
                }
                None => Ok(false),
            },
            line = up.read_line() => match line {
                Ok(Some(line)) => {
                    shared.progress();
                    relay_response(&mut up, &mut out, &shared, line, &mut state).await.map(|_| true)
                }
                Ok(None) | Err(_) => {
                    if !state.upstream_said_bye {
                        warn!("upstream connection lost");
                        let _ = out.write_all(b"* BYE [UNAVAILABLE] Connection to the mail server was lost\r\n").await;
                    }
                    Ok(false)
                }
            },
        };
        match step {
            Ok(true) => {
                if up.buffered() == 0 && rx.is_empty() && out.flush().await.is_err() {
                    break;
                }
            }
            Ok(false) | Err(_) => break,
        }
    }
    let _ = out.flush().await;
    let _ = out.shutdown().await;
    // Wake a client pump waiting for a continuation that will never come.
    drop(shared.take_expectation());
}

/// Relays one response: its first line, then any literals and the lines
/// that follow them.
/// What the response pump remembers between responses.
struct PumpState {
    upstream_said_bye: bool,
    router: Router,
    /// A real folder colliding with the virtual root was reported once.
    hidden_logged: bool,
}

/// A `* LIST` / `* LSUB` response naming the virtual root or something
/// below it: a real upstream folder that the tree hides (SPEC section 2).
fn lists_virtual_name(response: &[u8], router: &Router) -> bool {
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::response::{Data, Response};
    match imap_codec::ResponseCodec::default().decode(response) {
        Ok((_, Response::Data(Data::List { mailbox, .. }))) | Ok((_, Response::Data(Data::Lsub { mailbox, .. }))) => {
            router.is_virtual(crate::imap::command::mailbox_bytes(&mailbox))
        }
        _ => false,
    }
}

fn is_list_response(line: &[u8]) -> bool {
    line.len() > 7 && (line[..7].eq_ignore_ascii_case(b"* LIST ") || line[..7].eq_ignore_ascii_case(b"* LSUB "))
}

async fn relay_response(
    up: &mut UpstreamReader,
    out: &mut BufWriter<WriteHalf<ClientStream>>,
    shared: &Shared,
    line: Bytes,
    state: &mut PumpState,
) -> Result<(), FrameError> {
    match line.first() {
        Some(b'+') => {
            match shared.take_expectation() {
                Some(exp) => {
                    if exp.forward_plus {
                        out.write_all(&line).await?;
                        out.flush().await?;
                    }
                    let _ = exp.reply.send(Continuation::Continue);
                }
                None => {
                    shared.client_continuation.store(true, Ordering::Release);
                    out.write_all(&line).await?;
                    out.flush().await?;
                }
            }
            return Ok(());
        }
        Some(b'*') => {
            if line.len() >= 6 && line[2..6].eq_ignore_ascii_case(b"BYE ") {
                state.upstream_said_bye = true;
            }
            if is_list_response(&line) {
                // Small: read it whole (a name may be a literal), then decide.
                let mut whole = bytes::BytesMut::from(&line[..]);
                let mut current = line.clone();
                while let Some(lit) = literal_announcement(&current) {
                    up.read_literal_into(lit.len, &mut whole).await?;
                    current = up.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
                    whole.extend_from_slice(&current);
                }
                if lists_virtual_name(&whole, &state.router) {
                    if !state.hidden_logged {
                        state.hidden_logged = true;
                        warn!("a real folder collides with the Time Machine root and is hidden from this session");
                    }
                } else {
                    out.write_all(&whole).await?;
                }
                return Ok(());
            }
        }
        _ => {
            let tag = line.split(|&c| c == b' ').next().unwrap_or(b"");
            if let Some(exp) = shared.take_expectation_for(tag) {
                let _ = exp.reply.send(Continuation::Rejected);
            }
            shared.tagged_done();
        }
    }
    let Some(mut lit) = literal_announcement(&line) else {
        match capability::filter_line(&line) {
            Some(filtered) => out.write_all(&filtered).await?,
            None => out.write_all(&line).await?,
        }
        return Ok(());
    };
    out.write_all(&line).await?;
    loop {
        let mut remaining = lit.len;
        while remaining > 0 {
            let chunk = up.read_literal_chunk(remaining).await?;
            remaining -= chunk.len() as u64;
            out.write_all(&chunk).await?;
        }
        let next = up.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        out.write_all(&next).await?;
        match literal_announcement(&next) {
            Some(l) => lit = l,
            None => return Ok(()),
        }
    }
}
