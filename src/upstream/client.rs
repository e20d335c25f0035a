//! An open connection to the upstream: greeting read, commands of the
//! proxy's own run one at a time (login, NAMESPACE, CAPABILITY, the jobs'
//! EXAMINE/FETCH/APPEND). After a client's login it is handed to the relay.

use base64::Engine;
use bytes::{Bytes, BytesMut};
use imap_codec::decode::Decoder;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;
use tokio::io::AsyncWriteExt;

use crate::imap::capability;
use crate::imap::framing::{literal_announcement, FrameError, FrameReader};
use crate::imap::quoted;
use crate::imap::response::{Code, Kind, Status};
use crate::net::stream::UpstreamStream;

use super::append::{self, AppendMessage};
use super::{Namespace, Tagged, UpstreamError};

/// One response read with [`Upstream::next`].
#[derive(Debug)]
pub enum Next {
    Untagged(Bytes),
    /// The tagged completion (its `untagged` is empty).
    Done(Tagged),
}

/// Capability list in a greeting or tagged OK (`[CAPABILITY ...]`).
pub(super) fn capabilities_in(line: &[u8]) -> Option<Vec<String>> {
    let (start, end) = capability::find_in_line(line)?;
    Some(capability::parse_list(std::str::from_utf8(&line[start..end]).ok()?))
}

/// An open upstream connection that is not yet relaying.
pub struct Upstream {
    pub reader: FrameReader<UpstreamStream>,
    /// Capabilities as last announced (compare case-insensitively).
    pub capabilities: Vec<String>,
    next_tag: u32,
}

impl Upstream {
    pub(crate) fn new(reader: FrameReader<UpstreamStream>) -> Self {
        Self {
            reader,
            capabilities: Vec::new(),
            next_tag: 0,
        }
    }

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
        self.collect(&tag).await
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
        if crate::imap::response::tag_of(&response) == tag.as_bytes() {
            let status = Status::parse(&response).ok_or_else(|| {
                UpstreamError::Protocol(format!(
                    "malformed completion: {}",
                    String::from_utf8_lossy(crate::imap::framing::strip_eol(&response))
                ))
            })?;
            return Ok(Next::Done(Tagged {
                untagged: Vec::new(),
                status,
                line: response,
            }));
        }
        if response.starts_with(b"+") {
            return Err(UpstreamError::Protocol("unexpected continuation request".into()));
        }
        if let Some(s) = Status::parse(&response).filter(|s| s.tag.is_none() && s.kind == Kind::Bye) {
            return Err(UpstreamError::Refused(s.text));
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
        let mut out = Vec::new();
        for group in append::groups(messages, self.has_capability("MULTIAPPEND")) {
            let tag = self.tag();
            let parts = append::command(&tag, mailbox, group, plus);
            let last = parts.len().saturating_sub(1);
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
                    if crate::imap::response::tag_of(&r) == tag.as_bytes() {
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
                    status: Status::parse(&line)
                        .ok_or_else(|| UpstreamError::Protocol("malformed APPEND refusal".into()))?,
                    line,
                },
                None => loop {
                    match self.next(&tag).await? {
                        Next::Untagged(_) => continue,
                        Next::Done(t) => break t,
                    }
                },
            };
            let ok = tagged.is_ok();
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

    /// The login command (without tag) for these credentials, or the
    /// refusal when they cannot be sent. Uses AUTHENTICATE PLAIN when
    /// offered (no quoting problems), else LOGIN.
    fn login_command(
        &self,
        authz: Option<&[u8]>,
        user: &[u8],
        password: &[u8],
    ) -> Result<Result<String, Tagged>, UpstreamError> {
        if self.has_capability("AUTH=PLAIN") && self.has_capability("SASL-IR") {
            let mut plain = Vec::with_capacity(user.len() * 2 + password.len() + 2);
            plain.extend_from_slice(authz.unwrap_or(b""));
            plain.push(0);
            plain.extend_from_slice(user);
            plain.push(0);
            plain.extend_from_slice(password);
            let b64 = base64::engine::general_purpose::STANDARD.encode(plain);
            return Ok(Ok(format!("AUTHENTICATE PLAIN {b64}")));
        }
        if authz.is_some() {
            return Err(UpstreamError::Protocol(
                "upstream does not offer SASL PLAIN with initial response, needed for login_style = \"sasl-plain\""
                    .into(),
            ));
        }
        Ok(match (quoted(user), quoted(password)) {
            (Some(u), Some(p)) => Ok(format!("LOGIN {u} {p}")),
            _ => {
                let status = Status::no(
                    "itm",
                    Code::AuthenticationFailed,
                    "Credentials with 8-bit or control characters need AUTHENTICATE PLAIN",
                );
                Err(Tagged {
                    untagged: Vec::new(),
                    line: Bytes::from(status.encode()),
                    status,
                })
            }
        })
    }

    /// Logs in. `before` (a client's login: the ID that tells the upstream
    /// who the client is) goes in the same write as the login, pipelined
    /// as RFC 9051 section 5.5 allows: one round trip less. Nothing is
    /// pipelined after a login: Cyrus discards what it had read past a
    /// successful AUTHENTICATE (measured: a pipelined NAMESPACE is never
    /// answered). `authz` is a SASL authorization identity (master
    /// logins). The returned status is the upstream's verdict; an `Err`
    /// means the upstream could not be asked.
    pub async fn login(
        &mut self,
        before: Option<&str>,
        authz: Option<&[u8]>,
        user: &[u8],
        password: &[u8],
    ) -> Result<Tagged, UpstreamError> {
        let command = match self.login_command(authz, user, password)? {
            Ok(c) => c,
            Err(refused) => return Ok(refused),
        };
        let mut text = String::new();
        let before_tag = before.map(|b| {
            let tag = self.tag();
            text.push_str(&format!("{tag} {b}\r\n"));
            tag
        });
        let login_tag = self.tag();
        text.push_str(&format!("{login_tag} {command}\r\n"));
        let w = self.reader.get_mut();
        w.write_all(text.as_bytes()).await?;
        w.flush().await?;
        if let Some(tag) = before_tag {
            self.collect(&tag).await?;
        }
        let r = self.collect(&login_tag).await?;
        if r.is_ok() {
            match capabilities_in(&r.line) {
                Some(caps) => self.capabilities = caps,
                None => self.refresh_capabilities().await?,
            }
        }
        Ok(r)
    }

    /// The responses to the command tagged `tag`, up to its completion.
    async fn collect(&mut self, tag: &str) -> Result<Tagged, UpstreamError> {
        let mut untagged = Vec::new();
        loop {
            match self.next(tag).await? {
                Next::Untagged(r) => untagged.push(r),
                Next::Done(mut t) => {
                    t.untagged = untagged;
                    return Ok(t);
                }
            }
        }
    }

    /// What identifies this login's INBOX (which every mailbox has): the
    /// upstream's `* STATUS INBOX` line for its MAILBOXID (RFC 8474) where
    /// OBJECTID is offered, else for UIDVALIDITY and Dovecot's X-GUID, else
    /// for UIDVALIDITY alone. Compared byte for byte with what another
    /// login of the same server answered, so nothing is parsed. The
    /// upstream's words when it has no INBOX.
    pub async fn inbox_identity(&mut self) -> Result<Result<Bytes, String>, UpstreamError> {
        let asks: &[&str] = if self.has_capability("OBJECTID") {
            &["STATUS INBOX (MAILBOXID)"]
        } else {
            &["STATUS INBOX (UIDVALIDITY X-GUID)", "STATUS INBOX (UIDVALIDITY)"]
        };
        let mut refusal = String::from("no STATUS answer");
        for ask in asks {
            let r = self.run(ask).await?;
            if r.is_ok() {
                let line = r
                    .untagged
                    .iter()
                    .find(|l| l.get(..9).is_some_and(|p| p.eq_ignore_ascii_case(b"* STATUS ")));
                return Ok(line.cloned().ok_or(refusal));
            }
            refusal = r.status.text.clone();
            // NO: there is no INBOX; BAD: the item is unknown, ask less.
            if r.status.kind == Kind::No {
                break;
            }
        }
        Ok(Err(refusal))
    }

    /// Learns the personal namespace (prefix and delimiter).
    pub async fn namespace(&mut self) -> Result<Namespace, UpstreamError> {
        if self.has_capability("NAMESPACE") {
            let r = self.run("NAMESPACE").await?;
            if let Some(ns) = namespace_in(&r.untagged) {
                return Ok(ns);
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

/// The first personal namespace of a NAMESPACE response, if one is there.
fn namespace_in(untagged: &[Bytes]) -> Option<Namespace> {
    untagged
        .iter()
        .find_map(|line| match ResponseCodec::default().decode(line) {
            Ok((_, Response::Data(Data::Namespace { personal, .. }))) => personal.first().map(|ns| Namespace {
                prefix: String::from_utf8_lossy(ns.prefix.as_ref()).into_owned(),
                delimiter: ns.delimiter.as_ref().map(|d| d.inner()),
            }),
            _ => None,
        })
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
