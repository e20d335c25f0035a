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

use super::op;
use super::route::{Route, Router};
use super::session::Ctx;
use super::stream::{ClientStream, UpstreamStream};
use super::tree::{Selected, Tree};
use super::upstream::Upstream;

type ClientReader = FrameReader<ReadHalf<ClientStream>>;
type UpstreamReader = FrameReader<ReadHalf<UpstreamStream>>;
type UpstreamWriter = BufWriter<WriteHalf<UpstreamStream>>;

/// What the client pump asks the response pump to write.
pub(super) enum ToClient {
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
    /// A command of the proxy's own runs upstream: its responses go to the
    /// client pump, not the client.
    divert: Mutex<Option<Diversion>>,
    /// Lines the tree adds to a forwarded LIST/LSUB, written just before
    /// its tagged OK.
    inject: Mutex<Vec<(Bytes, Bytes)>>,
}

/// Where the responses to the proxy's own upstream command go.
struct Diversion {
    tag: Bytes,
    tx: mpsc::UnboundedSender<Bytes>,
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

    fn take_injection(&self, tag: &[u8]) -> Option<Bytes> {
        let mut guard = self.inject.lock().ok()?;
        let i = guard.iter().position(|(t, _)| t == tag)?;
        Some(guard.swap_remove(i).1)
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
pub(super) enum End {
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
    tree: Tree,
) {
    let caps = UpstreamCaps {
        unselect: upstream.has_capability("UNSELECT"),
        multiappend: upstream.has_capability("MULTIAPPEND"),
        literal_plus: upstream.has_capability("LITERAL+"),
    };
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
        tree,
        selected: None,
        upstream_selected: false,
        condstore: false,
        caps,
        next_tag: 0,
        last_upstream: Instant::now(),
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

/// What the upstream offers that the proxy's own commands use.
#[derive(Debug, Clone, Copy)]
pub(super) struct UpstreamCaps {
    pub unselect: bool,
    pub multiappend: bool,
    pub literal_plus: bool,
}

pub(super) struct ClientPump {
    pub(super) reader: ClientReader,
    upstream: UpstreamWriter,
    pub(super) tx: mpsc::Sender<ToClient>,
    shared: Arc<Shared>,
    pub(super) router: Router,
    pub(super) limits: Limits,
    pub(super) tree: Tree,
    /// The snapshot folder the client has selected.
    pub(super) selected: Option<Selected>,
    /// A real folder may be selected on the upstream connection.
    pub(super) upstream_selected: bool,
    /// CONDSTORE (or QRESYNC) is enabled in the session.
    pub(super) condstore: bool,
    pub(super) caps: UpstreamCaps,
    next_tag: u32,
    /// Last command that went upstream (client's or the proxy's own).
    last_upstream: Instant,
}

/// Command names that act on the selected folder: while a snapshot folder
/// is selected they never go upstream, even in a form imap-codec does not
/// parse (the upstream has no folder selected and would answer nonsense).
const SELECTED_STATE: &[&str] = &[
    "FETCH",
    "UID FETCH",
    "SEARCH",
    "UID SEARCH",
    "STORE",
    "UID STORE",
    "COPY",
    "UID COPY",
    "MOVE",
    "UID MOVE",
    "EXPUNGE",
    "UID EXPUNGE",
    "SORT",
    "UID SORT",
    "THREAD",
    "UID THREAD",
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "IDLE",
    "NOOP",
];

pub(super) fn bye(text: &str) -> End {
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

    pub(super) async fn read_line(&mut self) -> Result<Option<Bytes>, FrameError> {
        let idle = Duration::from_secs(self.limits.idle_timeout_secs);
        match tokio::time::timeout(idle, self.reader.read_line()).await {
            Ok(r) => r,
            Err(_) => Err(FrameError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "idle",
            ))),
        }
    }

    pub(super) async fn to_client(&self, bytes: impl Into<Bytes>) -> Result<(), FrameError> {
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
            let name = head.name.clone();
            let is_append = name == "APPEND";
            // A message for the tree (a restore request) is small: it is
            // buffered, so it gets the literal limit, not the message limit.
            let append_to_tree = is_append && head.first_astring().is_some_and(|m| self.router.is_virtual(&m));
            if is_append {
                if let (Some(lit), Some(mailbox)) = (literal_announcement(&line), head.first_astring()) {
                    let request_folder = matches!(self.tree.resolve(&mailbox), Some(super::tree::Node::Requests(_)));
                    if lit.sync && self.router.route_mailbox(&mailbox) == Route::Local && !request_folder {
                        // Refused before the client sends the message.
                        self.quiet().await?;
                        self.to_client(op::append_refusal(head.tag_str())).await?;
                        continue;
                    }
                    if self.router.route_mailbox(&mailbox) == Route::Forward {
                        if let Some(end) = self.stream_append(tag, line, lit).await? {
                            return Ok(end);
                        }
                        continue;
                    }
                }
            }
            let limit = if is_append && !append_to_tree {
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
            let tag_text = String::from_utf8_lossy(&tag).into_owned();
            let Some(c) = decode(&cmd.bytes) else {
                if self.selected.is_some() && SELECTED_STATE.contains(&name.as_str()) {
                    self.quiet().await?;
                    op::undecoded(self, &name, &tag_text, &cmd.bytes).await?;
                    continue;
                }
                // Never let an unparsed command about the tree reach the
                // upstream (it could create or touch a real folder there).
                let about_tree = CommandHead::parse(&cmd.bytes)
                    .and_then(|h| h.first_astring())
                    .is_some_and(|m| self.router.is_virtual(&m));
                if about_tree && name != "LIST" && name != "LSUB" {
                    self.quiet().await?;
                    self.to_client(format!(
                        "{tag_text} BAD Error in IMAP command {name}: not supported for Time Machine folders\r\n"
                    ))
                    .await?;
                    continue;
                }
                self.before_forward(&name, &tag, &cmd.bytes, None).await?;
                self.forward(tag, cmd, false).await?;
                continue;
            };
            match self.router.route(&c, self.selected.is_some()) {
                Route::Local => {
                    self.quiet().await?;
                    if let Some(end) = op::answer(self, &c, &tag_text).await? {
                        return Ok(end);
                    }
                }
                Route::Forward => {
                    let idle = matches!(c.body, CommandBody::Idle);
                    self.before_forward(&name, &tag, &cmd.bytes, Some(&c)).await?;
                    self.forward(tag, cmd, idle).await?;
                }
            }
        }
    }

    /// Waits until every forwarded command is answered, so the proxy's own
    /// answers never interleave with the upstream's.
    pub(super) async fn quiet(&mut self) -> Result<(), FrameError> {
        self.upstream.flush().await?;
        self.shared.quiesce().await;
        Ok(())
    }

    /// Session bookkeeping for a command about to go upstream: which folder
    /// the upstream has selected, what is enabled, what LIST must add.
    async fn before_forward(
        &mut self,
        name: &str,
        tag: &Bytes,
        bytes: &[u8],
        cmd: Option<&imap_codec::imap_types::command::Command<'_>>,
    ) -> Result<(), FrameError> {
        match cmd.map(|c| &c.body) {
            Some(CommandBody::Select { parameters, .. }) | Some(CommandBody::Examine { parameters, .. }) => {
                if !parameters.is_empty() {
                    self.condstore = true;
                }
                if self.selected.take().is_some() {
                    // Leaving a snapshot folder for a real one: say so as
                    // the upstream would have.
                    self.quiet().await?;
                    self.to_client(&b"* OK [CLOSED] Previous mailbox closed.\r\n"[..])
                        .await?;
                }
                self.upstream_selected = true;
            }
            Some(CommandBody::Close) | Some(CommandBody::Unselect) => self.upstream_selected = false,
            Some(CommandBody::Enable { .. }) => {
                let text = String::from_utf8_lossy(bytes).to_ascii_uppercase();
                if text.contains("CONDSTORE") || text.contains("QRESYNC") {
                    self.condstore = true;
                }
            }
            _ => {}
        }
        if name == "LIST" || name == "LSUB" {
            let args = CommandHead::parse(bytes).map(|h| h.rest).unwrap_or_default();
            if let Some(list) = crate::imap::list_command::parse(args, name == "LSUB") {
                match self.tree.list_lines(&list) {
                    Ok(lines) if !lines.is_empty() => {
                        if let Ok(mut inject) = self.shared.inject.lock() {
                            inject.push((tag.clone(), Bytes::from(lines)));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "cannot list the Time Machine tree"),
                }
            }
        }
        Ok(())
    }

    /// A tag for the proxy's own upstream commands (never a client's: those
    /// cannot start with a digit-free `itm-` and a client reusing it would
    /// only confuse itself).
    pub(super) fn proxy_tag(&mut self) -> String {
        self.next_tag += 1;
        format!("itm-p{}", self.next_tag)
    }

    /// Starts a command of the proxy's own on the upstream connection:
    /// registers the diversion of its responses. Call [`Self::quiet`] first.
    pub(super) fn begin_own(&mut self, tag: &str) -> mpsc::UnboundedReceiver<Bytes> {
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

    /// Writes part of the proxy's own command.
    pub(super) async fn own_write(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.upstream.write_all(bytes).await?;
        Ok(())
    }

    /// Writes a line announcing a synchronising literal and waits for the
    /// upstream's `+`. False when the upstream refused the command instead.
    pub(super) async fn own_sync_literal(&mut self, tag: &str, line: &[u8]) -> Result<bool, FrameError> {
        let tag = Bytes::copy_from_slice(tag.as_bytes());
        Ok(self.send_and_expect(&tag, line, false).await? == Continuation::Continue)
    }

    /// Ends the proxy's command and collects its responses; the last one is
    /// the tagged completion (absent if the upstream went away).
    pub(super) async fn finish_own(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Bytes>,
    ) -> Result<Vec<Bytes>, FrameError> {
        self.upstream.flush().await?;
        let mut out = Vec::new();
        while let Some(r) = rx.recv().await {
            out.push(r);
        }
        Ok(out)
    }

    /// Runs a one-line command of the proxy's own (e.g. `UNSELECT`).
    pub(super) async fn own_command(&mut self, command: &str) -> Result<Vec<Bytes>, FrameError> {
        self.quiet().await?;
        let tag = self.proxy_tag();
        let rx = self.begin_own(&tag);
        self.own_write(format!("{tag} {command}\r\n").as_bytes()).await?;
        self.finish_own(rx).await
    }

    /// Sends the upstream a NOOP when it has not seen a command for
    /// `limits.upstream_keepalive_secs` (the proxy answers everything while a
    /// snapshot folder is selected).
    pub(super) async fn keepalive(&mut self) -> Result<(), FrameError> {
        if self.last_upstream.elapsed() >= Duration::from_secs(self.limits.upstream_keepalive_secs) {
            self.own_command("NOOP").await?;
        }
        Ok(())
    }

    /// Makes sure the upstream has no folder selected, so none of its
    /// untagged responses can reach a client looking at a snapshot folder.
    pub(super) async fn deselect_upstream(&mut self) -> Result<(), FrameError> {
        if !self.upstream_selected {
            return Ok(());
        }
        if self.caps.unselect {
            self.own_command("UNSELECT").await?;
        } else {
            // RFC 3501: a failed EXAMINE leaves no folder selected (and,
            // unlike CLOSE, expunges nothing).
            self.own_command("EXAMINE \"itm-no-such-folder\"").await?;
        }
        self.upstream_selected = false;
        Ok(())
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
        self.last_upstream = Instant::now();
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
    // Wake a client pump waiting for a continuation or a response that
    // will never come.
    drop(shared.take_expectation());
    if let Ok(mut d) = shared.divert.lock() {
        d.take();
    }
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

/// Reads the rest of a response whose first line is `line` (its literals
/// and the lines after them).
async fn read_whole(up: &mut UpstreamReader, line: Bytes) -> Result<Bytes, FrameError> {
    if literal_announcement(&line).is_none() {
        return Ok(line);
    }
    let mut whole = bytes::BytesMut::from(&line[..]);
    let mut current = line;
    while let Some(lit) = literal_announcement(&current) {
        up.read_literal_into(lit.len, &mut whole).await?;
        current = up.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        whole.extend_from_slice(&current);
    }
    Ok(whole.freeze())
}

/// Hands a response to the proxy's own command back to the client pump.
async fn divert(up: &mut UpstreamReader, shared: &Shared, line: Bytes) -> Result<(), FrameError> {
    let whole = read_whole(up, line).await?;
    let tag = whole.split(|&c| c == b' ').next().unwrap_or(b"").to_vec();
    let mut guard = shared.divert.lock().map_err(|_| FrameError::UnexpectedEof)?;
    let done = guard.as_ref().is_some_and(|d| d.tag == tag);
    if let Some(d) = guard.as_ref() {
        let _ = d.tx.send(whole);
    }
    if done {
        *guard = None;
        drop(guard);
        if let Some(exp) = shared.take_expectation_for(&tag) {
            let _ = exp.reply.send(Continuation::Rejected);
        }
        shared.tagged_done();
    }
    Ok(())
}

async fn relay_response(
    up: &mut UpstreamReader,
    out: &mut BufWriter<WriteHalf<ClientStream>>,
    shared: &Shared,
    line: Bytes,
    state: &mut PumpState,
) -> Result<(), FrameError> {
    let diverting = line.first() != Some(&b'+') && shared.divert.lock().is_ok_and(|d| d.is_some());
    if diverting {
        return divert(up, shared, line).await;
    }
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
                let whole = read_whole(up, line).await?;
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
            if let Some(lines) = shared.take_injection(tag) {
                let rest = &line[tag.len()..];
                if rest.len() > 3 && rest[1..3].eq_ignore_ascii_case(b"OK") {
                    out.write_all(&lines).await?;
                }
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
