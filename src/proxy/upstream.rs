//! The connection to the real mail server: connect (plain, STARTTLS or
//! implicit TLS), read the greeting, log in, and run the proxy's own small
//! commands. After login the connection is handed to the relay.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::{Bytes, BytesMut};
use imap_codec::decode::Decoder;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::{Config, MasterLoginStyle, UpstreamTls};
use crate::imap::capability;
use crate::imap::framing::{literal_announcement, strip_eol, FrameError, FrameReader};
use crate::imap::quoted;

use super::stream::{MaybeTls, UpstreamStream};
use super::tls::{upstream_config, TlsSetupError};

/// Why talking to the upstream failed. Every variant means "unavailable"
/// to the client; the text is for the log.
#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("TLS with upstream failed: {0}")]
    Tls(std::io::Error),
    #[error("upstream refused the session: {0}")]
    Refused(String),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream connection: {0}")]
    Frame(#[from] FrameError),
    #[error("upstream connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Outcome of a tagged command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// Responses to one of the proxy's own commands.
#[derive(Debug, Clone)]
pub struct Tagged {
    /// Untagged responses, each with its literals inline.
    pub untagged: Vec<Bytes>,
    pub status: Status,
    /// The tagged line.
    pub line: Bytes,
}

impl Tagged {
    /// The tagged line after `tag SP`, e.g. `NO [AUTHENTICATIONFAILED] ...\r\n`.
    pub fn status_text(&self) -> &[u8] {
        let l = &self.line[..];
        match memchr::memchr(b' ', l) {
            Some(i) => &l[i + 1..],
            None => l,
        }
    }
}

/// One response read with [`Upstream::next`].
#[derive(Debug)]
pub enum Next {
    Untagged(Bytes),
    /// The tagged completion (its `untagged` is empty).
    Done(Tagged),
}

/// The upstream's personal namespace: names of the virtual tree follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

impl Default for Namespace {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            delimiter: Some('/'),
        }
    }
}

/// Everything needed to open upstream connections, built once from config.
pub struct Connector {
    address: String,
    mode: UpstreamTls,
    tls: Option<Arc<ClientConfig>>,
    server_name: ServerName<'static>,
    timeout: Duration,
    max_line: usize,
    master_user: String,
    master_password: String,
    login_style: MasterLoginStyle,
    master_separator: String,
}

impl Connector {
    pub fn from_config(config: &Config) -> Result<Self, TlsSetupError> {
        let name = config
            .upstream
            .server_name
            .clone()
            .unwrap_or_else(|| config.upstream_host().to_string());
        let server_name = ServerName::try_from(name.clone()).map_err(|e| TlsSetupError::Rustls {
            key: "upstream.server_name",
            message: format!("`{name}`: {e}"),
        })?;
        Ok(Self {
            address: config.upstream.address.clone(),
            mode: config.upstream.tls,
            tls: upstream_config(config)?,
            server_name,
            timeout: Duration::from_secs(config.limits.upstream_timeout_secs),
            // Responses (long SEARCH results, big ENVELOPEs) come from a
            // trusted server: allow long lines there.
            max_line: (config.limits.max_message_size as usize).max(16 << 20),
            master_user: config.upstream.master_user.clone(),
            master_password: config.upstream.master_password.clone(),
            login_style: config.upstream.login_style,
            master_separator: config.upstream.master_separator.clone(),
        })
    }

    /// Longest response line accepted from the upstream.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Connects, reads the greeting, and secures the connection as configured.
    pub async fn connect(&self) -> Result<Upstream, UpstreamError> {
        tokio::time::timeout(self.timeout, self.connect_inner())
            .await
            .map_err(|_| UpstreamError::Timeout(self.timeout))?
    }

    async fn tls_handshake(&self, tcp: TcpStream) -> Result<UpstreamStream, UpstreamError> {
        let Some(cc) = &self.tls else {
            return Err(UpstreamError::Protocol("TLS requested but not configured".into()));
        };
        let tls = tokio_rustls::TlsConnector::from(cc.clone())
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(UpstreamError::Tls)?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }

    async fn connect_inner(&self) -> Result<Upstream, UpstreamError> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .map_err(|source| UpstreamError::Connect {
                address: self.address.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let stream = match self.mode {
            UpstreamTls::Implicit => self.tls_handshake(tcp).await?,
            _ => MaybeTls::Plain(tcp),
        };
        let mut up = Upstream {
            reader: FrameReader::new(stream, self.max_line),
            capabilities: Vec::new(),
            next_tag: 0,
        };
        let greeting = up.reader.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        if !greeting.starts_with(b"* OK") {
            return Err(UpstreamError::Refused(
                String::from_utf8_lossy(strip_eol(&greeting)).into_owned(),
            ));
        }
        up.capabilities = capabilities_in(&greeting).unwrap_or_default();
        if self.mode == UpstreamTls::Starttls {
            let r = up.run("STARTTLS").await?;
            if r.status != Status::Ok {
                return Err(UpstreamError::Refused(String::from_utf8_lossy(&r.line).into_owned()));
            }
            if up.reader.buffered() != 0 {
                return Err(UpstreamError::Protocol("data after STARTTLS response".into()));
            }
            let (stream, _) = up.reader.into_parts();
            let MaybeTls::Plain(tcp) = stream else {
                return Err(UpstreamError::Protocol("STARTTLS on a TLS connection".into()));
            };
            up.reader = FrameReader::new(self.tls_handshake(tcp).await?, self.max_line);
            up.capabilities.clear();
        }
        if up.capabilities.is_empty() {
            up.refresh_capabilities().await?;
        }
        Ok(up)
    }

    /// Logs in as `user` with the master credentials (for snapshots and restores).
    pub async fn connect_as(&self, user: &str) -> Result<(Upstream, Tagged), UpstreamError> {
        let mut up = self.connect().await?;
        let r = match self.login_style {
            MasterLoginStyle::Separator => {
                let authc = format!("{user}{}{}", self.master_separator, self.master_user);
                up.login(None, authc.as_bytes(), self.master_password.as_bytes())
                    .await?
            }
            MasterLoginStyle::SaslPlain => {
                up.login(
                    Some(user.as_bytes()),
                    self.master_user.as_bytes(),
                    self.master_password.as_bytes(),
                )
                .await?
            }
        };
        Ok((up, r))
    }
}

/// Capability list in a greeting or tagged OK (`[CAPABILITY ...]`).
fn capabilities_in(line: &[u8]) -> Option<Vec<String>> {
    let (start, end) = capability::find_in_line(line)?;
    Some(capability::parse_list(std::str::from_utf8(&line[start..end]).ok()?))
}

/// One message for [`Upstream::append`].
#[derive(Debug, Clone, Copy)]
pub struct AppendMessage<'a> {
    pub flags: &'a [String],
    /// INTERNALDATE as IMAP writes it (without quotes).
    pub internaldate: &'a str,
    pub raw: &'a [u8],
}

/// An open upstream connection that is not yet relaying.
pub struct Upstream {
    pub reader: FrameReader<UpstreamStream>,
    /// Capabilities as last announced (compare case-insensitively).
    pub capabilities: Vec<String>,
    next_tag: u32,
}

impl Upstream {
    pub fn has_capability(&self, cap: &str) -> bool {
        self.capabilities.iter().any(|c| c.eq_ignore_ascii_case(cap))
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("itm{}", self.next_tag)
    }

    /// Runs one command (text without tag and CRLF) and collects its responses.
    pub async fn run(&mut self, command: &str) -> Result<Tagged, UpstreamError> {
        let tag = self.start(command).await?;
        let mut untagged = Vec::new();
        loop {
            match self.next(&tag).await? {
                Next::Untagged(r) => untagged.push(r),
                Next::Done(mut t) => {
                    t.untagged = untagged;
                    return Ok(t);
                }
            }
        }
    }

    /// Sends a command and returns its tag; read its responses with
    /// [`Upstream::next`] (for responses too big to collect, like FETCH).
    pub async fn start(&mut self, command: &str) -> Result<String, UpstreamError> {
        let tag = self.tag();
        let w = self.reader.get_mut();
        w.write_all(format!("{tag} {command}\r\n").as_bytes()).await?;
        w.flush().await?;
        Ok(tag)
    }

    /// The next response to the command tagged `tag`.
    pub async fn next(&mut self, tag: &str) -> Result<Next, UpstreamError> {
        let response = read_response(&mut self.reader).await?;
        if let Some(rest) = response.strip_prefix(tag.as_bytes()).and_then(|r| r.strip_prefix(b" ")) {
            let word = rest.split(|&c| c == b' ' || c == b'\r').next().unwrap_or(b"");
            let status = if word.eq_ignore_ascii_case(b"OK") {
                Status::Ok
            } else if word.eq_ignore_ascii_case(b"NO") {
                Status::No
            } else {
                Status::Bad
            };
            return Ok(Next::Done(Tagged {
                untagged: Vec::new(),
                status,
                line: response,
            }));
        }
        if response.starts_with(b"+") {
            return Err(UpstreamError::Protocol("unexpected continuation request".into()));
        }
        if response.len() >= 6 && response[..6].eq_ignore_ascii_case(b"* BYE ") {
            return Err(UpstreamError::Refused(
                String::from_utf8_lossy(strip_eol(&response)).into_owned(),
            ));
        }
        Ok(Next::Untagged(response))
    }

    /// APPENDs messages (flags, INTERNALDATE, bytes) to `mailbox` for the
    /// proxy's own jobs: one MULTIAPPEND with LITERAL+ where the server has
    /// them, else one APPEND per message with synchronising literals.
    /// Returns the tagged answer of each APPEND command sent (one for
    /// MULTIAPPEND); it stops at the first refusal.
    pub async fn append(
        &mut self,
        mailbox: &[u8],
        messages: &[AppendMessage<'_>],
    ) -> Result<Vec<Tagged>, UpstreamError> {
        let plus = self.has_capability("LITERAL+");
        let groups: Vec<&[AppendMessage<'_>]> = if self.has_capability("MULTIAPPEND") {
            vec![messages]
        } else {
            messages.chunks(1).collect()
        };
        let mut out = Vec::new();
        for group in groups {
            if group.is_empty() {
                continue;
            }
            let tag = self.tag();
            let mut parts: Vec<Vec<u8>> = Vec::new();
            let mut head = format!("{tag} APPEND ").into_bytes();
            match crate::imap::quoted(mailbox) {
                Some(q) => head.extend_from_slice(q.as_bytes()),
                None => {
                    head.extend_from_slice(
                        format!("{{{}{}}}\r\n", mailbox.len(), if plus { "+" } else { "" }).as_bytes(),
                    );
                    if !plus {
                        parts.push(std::mem::take(&mut head));
                    }
                    head.extend_from_slice(mailbox);
                }
            }
            for m in group {
                head.extend_from_slice(
                    format!(
                        " ({}) \"{}\" {{{}{}}}\r\n",
                        m.flags.join(" "),
                        m.internaldate.trim(),
                        m.raw.len(),
                        if plus { "+" } else { "" }
                    )
                    .as_bytes(),
                );
                if !plus {
                    parts.push(std::mem::take(&mut head));
                }
                head.extend_from_slice(m.raw);
            }
            head.extend_from_slice(b"\r\n");
            parts.push(head);
            let last = parts.len() - 1;
            let mut refused = None;
            for (i, part) in parts.iter().enumerate() {
                let w = self.reader.get_mut();
                w.write_all(part).await?;
                w.flush().await?;
                if i == last {
                    break;
                }
                // A synchronising literal: wait for `+` (or a refusal).
                loop {
                    let r = read_response(&mut self.reader).await?;
                    if r.starts_with(b"+") {
                        break;
                    }
                    if r.starts_with(tag.as_bytes()) {
                        refused = Some(r);
                        break;
                    }
                }
                if refused.is_some() {
                    break;
                }
            }
            let tagged = match refused {
                Some(line) => Tagged {
                    untagged: Vec::new(),
                    status: Status::No,
                    line,
                },
                None => loop {
                    match self.next(&tag).await? {
                        Next::Untagged(_) => continue,
                        Next::Done(t) => break t,
                    }
                },
            };
            let ok = tagged.status == Status::Ok;
            out.push(tagged);
            if !ok {
                break;
            }
        }
        Ok(out)
    }

    /// Asks for CAPABILITY again (after STARTTLS or login).
    pub async fn refresh_capabilities(&mut self) -> Result<(), UpstreamError> {
        let r = self.run("CAPABILITY").await?;
        for line in &r.untagged {
            if let Some(caps) = capabilities_in(line) {
                self.capabilities = caps;
            }
        }
        Ok(())
    }

    /// Logs in. `authz` is a SASL authorization identity (master logins).
    /// Uses AUTHENTICATE PLAIN when offered (no quoting problems), else LOGIN.
    /// The returned status is the upstream's verdict; an `Err` means the
    /// upstream could not be asked.
    pub async fn login(&mut self, authz: Option<&[u8]>, user: &[u8], password: &[u8]) -> Result<Tagged, UpstreamError> {
        let r = if self.has_capability("AUTH=PLAIN") && self.has_capability("SASL-IR") {
            let mut plain = Vec::with_capacity(user.len() * 2 + password.len() + 2);
            plain.extend_from_slice(authz.unwrap_or(b""));
            plain.push(0);
            plain.extend_from_slice(user);
            plain.push(0);
            plain.extend_from_slice(password);
            let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
            self.run(&format!("AUTHENTICATE PLAIN {b64}")).await?
        } else if authz.is_some() {
            return Err(UpstreamError::Protocol(
                "upstream does not offer SASL PLAIN with initial response, needed for login_style = \"sasl-plain\""
                    .into(),
            ));
        } else {
            match (quoted(user), quoted(password)) {
                (Some(u), Some(p)) => self.run(&format!("LOGIN {u} {p}")).await?,
                _ => {
                    return Ok(Tagged {
                        untagged: Vec::new(),
                        status: Status::No,
                        line: Bytes::from_static(b"x NO [AUTHENTICATIONFAILED] Credentials with 8-bit or control characters need AUTHENTICATE PLAIN\r\n"),
                    })
                }
            }
        };
        if r.status == Status::Ok {
            match capabilities_in(&r.line) {
                Some(caps) => self.capabilities = caps,
                None => self.refresh_capabilities().await?,
            }
        }
        Ok(r)
    }

    /// Learns the personal namespace (prefix and delimiter).
    pub async fn namespace(&mut self) -> Result<Namespace, UpstreamError> {
        if self.has_capability("NAMESPACE") {
            let r = self.run("NAMESPACE").await?;
            for line in &r.untagged {
                if let Ok((_, Response::Data(Data::Namespace { personal, .. }))) = ResponseCodec::default().decode(line)
                {
                    if let Some(ns) = personal.first() {
                        return Ok(Namespace {
                            prefix: String::from_utf8_lossy(ns.prefix.as_ref()).into_owned(),
                            delimiter: ns.delimiter.as_ref().map(|d| d.inner()),
                        });
                    }
                }
            }
        }
        let r = self.run("LIST \"\" \"\"").await?;
        for line in &r.untagged {
            if let Ok((_, Response::Data(Data::List { delimiter, .. }))) = ResponseCodec::default().decode(line) {
                return Ok(Namespace {
                    prefix: String::new(),
                    delimiter: delimiter.map(|d| d.inner()),
                });
            }
        }
        Ok(Namespace::default())
    }
}

/// Reads one whole response (line plus literals) into memory. Only for the
/// proxy's own small commands; relayed responses are streamed instead.
pub async fn read_response<R: tokio::io::AsyncRead + Unpin>(reader: &mut FrameReader<R>) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::new();
    loop {
        let line = reader.read_line().await?.ok_or(FrameError::UnexpectedEof)?;
        out.extend_from_slice(&line);
        match literal_announcement(&line) {
            Some(lit) => reader.read_literal_into(lit.len, &mut out).await?,
            None => return Ok(out.freeze()),
        }
    }
}
