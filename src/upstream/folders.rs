//! What the jobs ask the upstream about folders: the personal namespace,
//! the folder list (minus the virtual tree and exclusions), and EXAMINE.

use imap_codec::decode::Decoder;
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;

use crate::imap::fetch_scan::atom_list;
use crate::imap::quoted;
use crate::imap::response::{Code, Status};

use super::{Upstream, UpstreamError};

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

/// One folder of `LIST "" "*"`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: Vec<u8>,
    pub delimiter: Option<char>,
    pub attributes: Vec<String>,
}

impl Listed {
    /// `\Noselect` or `\NonExistent`: nothing to examine.
    pub fn selectable(&self) -> bool {
        !self
            .attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent"))
    }
}

/// A folder name as a command argument (quoted string).
pub fn mailbox_arg(name: &[u8]) -> Result<String, UpstreamError> {
    quoted(name)
        .ok_or_else(|| UpstreamError::Protocol(format!("folder name not quotable: {}", String::from_utf8_lossy(name))))
}

/// `LIST "" "*"`, minus the virtual tree (`root`, as the client sees it)
/// and the folders in `exclude` (with or without the namespace prefix).
pub async fn list_folders(
    up: &mut Upstream,
    root: &[u8],
    exclude: &[String],
    prefix: &str,
) -> Result<Vec<Listed>, UpstreamError> {
    let r = up.run("LIST \"\" \"*\"").await?;
    if !r.is_ok() {
        return Err(r.refusal("LIST"));
    }
    let mut out = Vec::new();
    for line in &r.untagged {
        let Ok((
            _,
            Response::Data(Data::List {
                items,
                delimiter,
                mailbox,
            }),
        )) = ResponseCodec::default().decode(line)
        else {
            continue;
        };
        let name = crate::imap::command::mailbox_bytes(&mailbox).to_vec();
        let delim = delimiter.as_ref().map(|d| d.inner());
        let below_root = delim.is_some_and(|d| {
            name.strip_prefix(root)
                .is_some_and(|rest| rest.first() == Some(&(d as u8)))
        });
        let text = String::from_utf8_lossy(&name);
        let excluded = exclude.iter().any(|x| *x == text || format!("{prefix}{x}") == text);
        if name == root || below_root || excluded {
            continue;
        }
        out.push(Listed {
            name,
            delimiter: delim,
            attributes: items.iter().map(|a| a.to_string()).collect(),
        });
    }
    Ok(out)
}

/// What EXAMINE says about a folder.
#[derive(Debug, Default)]
pub struct Examined {
    pub exists: u32,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    pub flags: Vec<String>,
    /// The untagged lines as sent and the tagged OK's text: how this server
    /// words a SELECT (`imap::dialect`).
    pub untagged: Vec<bytes::Bytes>,
    pub text: String,
}

/// `EXAMINE name [(CONDSTORE)]`: read-only, so nothing changes (no
/// `\Recent` taken, no `\Seen` set).
pub async fn examine(up: &mut Upstream, name: &[u8], condstore: bool) -> Result<Examined, UpstreamError> {
    let arg = mailbox_arg(name)?;
    let cmd = if condstore {
        format!("EXAMINE {arg} (CONDSTORE)")
    } else {
        format!("EXAMINE {arg}")
    };
    let r = up.run(&cmd).await?;
    if !r.is_ok() {
        return Err(r.refusal(&cmd));
    }
    let mut e = Examined::default();
    for line in r.untagged.iter().chain(std::iter::once(&r.line)) {
        let text = String::from_utf8_lossy(line);
        if let Some(n) = text
            .strip_prefix("* ")
            .and_then(|t| t.trim_end().strip_suffix(" EXISTS"))
        {
            e.exists = n.parse().unwrap_or(0);
        } else if let Some(rest) = text.strip_prefix("* FLAGS ") {
            e.flags = atom_list(rest.trim_end().as_bytes());
        }
        match Status::parse(line).and_then(|s| s.code) {
            Some(Code::UidValidity(n)) => e.uidvalidity = n,
            Some(Code::UidNext(n)) => e.uidnext = n,
            Some(Code::HighestModSeq(n)) => e.highestmodseq = n,
            _ => {}
        }
    }
    e.text = r.status.text.clone();
    e.untagged = r.untagged;
    Ok(e)
}
