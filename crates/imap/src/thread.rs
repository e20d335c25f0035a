//! THREAD (RFC 5256) for snapshot folders: ORDEREDSUBJECT, REFERENCES, and
//! Dovecot's REFS (REFERENCES without subject merging, threads ordered by
//! their newest message), plus the base-subject rule SORT shares.
//! Checked against Dovecot by `tests/tree.rs`.

use std::collections::HashMap;

/// What threading needs of one message.
#[derive(Debug, Clone, Default)]
pub struct ThreadMessage {
    /// The number to print (sequence number or UID).
    pub n: u32,
    /// Message-ID without angle brackets (empty: none).
    pub message_id: String,
    /// References, or else the first In-Reply-To id, oldest first.
    pub references: Vec<String>,
    pub subject: String,
    /// Sent date (Date header, else INTERNALDATE), seconds.
    pub date: i64,
}

/// RFC 5256 section 2.1 base subject, upper-cased for comparison, and
/// whether the subject was a reply or forward (a prefix or trailer went).
pub fn base_subject(subject: &str) -> (String, bool) {
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply = false;
    loop {
        // (2) trailers: "(fwd)" and spaces.
        loop {
            let t = s.trim_end();
            let cut = t.len().saturating_sub(5);
            if t.get(cut..).is_some_and(|end| end.eq_ignore_ascii_case("(fwd)")) {
                s = t[..cut].to_string();
                reply = true;
            } else {
                s = t.to_string();
                break;
            }
        }
        // (3)-(5) leaders and blobs.
        loop {
            let before = s.clone();
            s = s.trim_start().to_string();
            if let Some(rest) = strip_refwd(&s) {
                s = rest;
                reply = true;
            } else if let Some(rest) = strip_blob(&s) {
                if !rest.trim().is_empty() {
                    s = rest;
                }
            }
            if s == before {
                break;
            }
        }
        // (6) "[fwd: ...]".
        if s.len() > 6 && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("[fwd:")) && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        return (s.to_uppercase(), reply);
    }
}

/// `[blob]` plus spaces at the start.
fn strip_blob(s: &str) -> Option<String> {
    let rest = s.strip_prefix('[')?;
    let end = rest.find(']')?;
    if rest[..end].contains('[') {
        return None;
    }
    Some(rest[end + 1..].trim_start().to_string())
}

/// `*blob ("re" / "fw" / "fwd") *WSP [blob] ":"` at the start.
fn strip_refwd(s: &str) -> Option<String> {
    let mut t = s.to_string();
    while let Some(rest) = strip_blob(&t) {
        if rest.len() == t.len() {
            break;
        }
        t = rest;
    }
    let lower = t.to_ascii_lowercase();
    let word = ["re", "fwd", "fw"].into_iter().find(|w| lower.starts_with(w))?;
    let mut rest = t[word.len()..].trim_start().to_string();
    if let Some(r) = strip_blob(&rest) {
        rest = r;
    }
    rest.strip_prefix(':').map(str::to_string)
}

/// A node of the thread tree: a message index, or a dummy (missing parent).
#[derive(Debug, Clone, Default)]
struct Node {
    msg: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

fn is_ancestor(nodes: &[Node], a: usize, mut b: usize) -> bool {
    // Is `a` an ancestor of (or equal to) `b`?
    let mut steps = 0;
    loop {
        if a == b {
            return true;
        }
        match nodes[b].parent {
            Some(p) if steps < nodes.len() => {
                b = p;
                steps += 1;
            }
            _ => return false,
        }
    }
}

fn set_parent(nodes: &mut [Node], child: usize, parent: usize) {
    if let Some(old) = nodes[child].parent {
        nodes[old].children.retain(|&c| c != child);
    }
    nodes[child].parent = Some(parent);
    nodes[parent].children.push(child);
}

/// A node's sort key: its (or its first child's) date, then its position.
type DateKey<'a> = dyn Fn(&Vec<Node>, usize) -> (i64, usize) + 'a;

/// Which algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    OrderedSubject,
    References,
    Refs,
}

impl Algorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "ORDEREDSUBJECT" => Some(Self::OrderedSubject),
            "REFERENCES" => Some(Self::References),
            "REFS" => Some(Self::Refs),
            _ => None,
        }
    }
}

/// The `(...)(...)` text of `* THREAD` for `msgs` (in sequence order).
pub fn thread(msgs: &[ThreadMessage], algorithm: Algorithm) -> String {
    match algorithm {
        Algorithm::OrderedSubject => ordered_subject(msgs),
        Algorithm::References | Algorithm::Refs => references(msgs, algorithm == Algorithm::References),
    }
}

fn ordered_subject(msgs: &[ThreadMessage]) -> String {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    let subj: Vec<String> = msgs.iter().map(|m| base_subject(&m.subject).0).collect();
    order.sort_by(|&a, &b| {
        subj[a]
            .cmp(&subj[b])
            .then(msgs[a].date.cmp(&msgs[b].date))
            .then(a.cmp(&b))
    });
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match groups.last_mut() {
            Some(g) if subj[g[0]] == subj[i] => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups.sort_by(|a, b| msgs[a[0]].date.cmp(&msgs[b[0]].date).then(a[0].cmp(&b[0])));
    let mut out = String::new();
    for g in groups {
        out.push('(');
        out.push_str(&msgs[g[0]].n.to_string());
        match g.len() {
            1 => {}
            2 => out.push_str(&format!(" {}", msgs[g[1]].n)),
            _ => {
                out.push(' ');
                for &c in &g[1..] {
                    out.push_str(&format!("({})", msgs[c].n));
                }
            }
        }
        out.push(')');
    }
    out
}

fn references(msgs: &[ThreadMessage], merge_subjects: bool) -> String {
    let mut nodes: Vec<Node> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut node_of = |id: &str, nodes: &mut Vec<Node>| -> usize {
        if let Some(&n) = by_id.get(id) {
            return n;
        }
        nodes.push(Node::default());
        by_id.insert(id.to_string(), nodes.len() - 1);
        nodes.len() - 1
    };
    // Step 1: containers and links.
    let mut msg_node = vec![0usize; msgs.len()];
    for (i, m) in msgs.iter().enumerate() {
        let own = if m.message_id.is_empty() {
            None
        } else {
            let n = node_of(&m.message_id, &mut nodes);
            // A duplicate Message-ID gets a container of its own.
            if nodes[n].msg.is_some() {
                None
            } else {
                Some(n)
            }
        };
        let own = own.unwrap_or_else(|| {
            nodes.push(Node::default());
            nodes.len() - 1
        });
        nodes[own].msg = Some(i);
        msg_node[i] = own;
        // A: link the references in order.
        let refs: Vec<usize> = m.references.iter().map(|r| node_of(r, &mut nodes)).collect();
        for w in refs.windows(2) {
            let (p, c) = (w[0], w[1]);
            if nodes[c].parent.is_none() && !is_ancestor(&nodes, c, p) {
                set_parent(&mut nodes, c, p);
            }
        }
        // B: the message's parent is its last reference.
        match refs.last() {
            Some(&p) if !is_ancestor(&nodes, own, p) => set_parent(&mut nodes, own, p),
            _ => {
                if let Some(old) = nodes[own].parent.take() {
                    nodes[old].children.retain(|&c| c != own);
                }
            }
        }
    }
    // Step 2: the root set.
    let mut roots: Vec<usize> = (0..nodes.len()).filter(|&n| nodes[n].parent.is_none()).collect();
    // Step 3: prune dummies.
    fn prune(nodes: &mut Vec<Node>, list: Vec<usize>, at_root: bool) -> Vec<usize> {
        let mut out = Vec::new();
        for n in list {
            let kids = std::mem::take(&mut nodes[n].children);
            let kids = prune(nodes, kids, false);
            if nodes[n].msg.is_none() {
                if kids.is_empty() {
                    continue;
                }
                if !at_root || kids.len() == 1 {
                    out.extend(kids);
                    continue;
                }
            }
            for &k in &kids {
                nodes[k].parent = Some(n);
            }
            nodes[n].children = kids;
            out.push(n);
        }
        out
    }
    roots = prune(&mut nodes, roots, true);
    for &r in &roots {
        nodes[r].parent = None;
    }
    // Dates: a dummy takes its first child's date after sorting.
    let date_of = |nodes: &Vec<Node>, n: usize| -> (i64, usize) {
        let mut cur = n;
        loop {
            if let Some(m) = nodes[cur].msg {
                return (msgs[m].date, m);
            }
            match nodes[cur].children.first() {
                Some(&c) => cur = c,
                None => return (0, 0),
            }
        }
    };
    fn sort_children(nodes: &mut Vec<Node>, n: usize, key: &DateKey<'_>) {
        let kids = nodes[n].children.clone();
        for &k in &kids {
            sort_children(nodes, k, key);
        }
        let mut kids = kids;
        kids.sort_by_key(|&k| key(nodes, k));
        nodes[n].children = kids;
    }
    for &r in &roots {
        sort_children(&mut nodes, r, &date_of);
    }
    roots.sort_by_key(|&r| date_of(&nodes, r));
    if merge_subjects {
        roots = merge_by_subject(&mut nodes, roots, msgs, &date_of);
        for &r in &roots {
            sort_children(&mut nodes, r, &date_of);
        }
        roots.sort_by_key(|&r| date_of(&nodes, r));
    } else {
        // REFS: threads ordered by their newest message.
        fn newest(nodes: &Vec<Node>, n: usize, msgs: &[ThreadMessage]) -> (i64, usize) {
            let own = nodes[n].msg.map(|m| (msgs[m].date, m)).unwrap_or((i64::MIN, 0));
            nodes[n]
                .children
                .iter()
                .map(|&c| newest(nodes, c, msgs))
                .fold(own, std::cmp::max)
        }
        roots.sort_by_key(|&r| newest(&nodes, r, msgs));
    }
    let mut out = String::new();
    for r in roots {
        out.push('(');
        write_node(&nodes, r, msgs, &mut out, true);
        out.push(')');
    }
    out
}

/// Step 5 of REFERENCES: threads whose roots share a base subject merge.
fn merge_by_subject(
    nodes: &mut Vec<Node>,
    roots: Vec<usize>,
    msgs: &[ThreadMessage],
    date_of: &DateKey<'_>,
) -> Vec<usize> {
    let subject_of = |nodes: &Vec<Node>, n: usize| -> (String, bool) {
        let m = nodes[n]
            .msg
            .or_else(|| nodes[n].children.first().and_then(|&c| nodes[c].msg));
        m.map(|m| base_subject(&msgs[m].subject)).unwrap_or_default()
    };
    let mut table: HashMap<String, usize> = HashMap::new();
    for &r in &roots {
        let (subj, reply) = subject_of(nodes, r);
        if subj.is_empty() {
            continue;
        }
        match table.get(&subj) {
            None => {
                table.insert(subj, r);
            }
            Some(&t) => {
                let (_, t_reply) = subject_of(nodes, t);
                let replace = (nodes[r].msg.is_none() && nodes[t].msg.is_some()) || (t_reply && !reply);
                if replace {
                    table.insert(subj, r);
                }
            }
        }
    }
    let mut out: Vec<usize> = Vec::new();
    for r in roots {
        let (subj, reply) = subject_of(nodes, r);
        let Some(&t) = table.get(&subj) else {
            out.push(r);
            continue;
        };
        if t == r || subj.is_empty() {
            out.push(r);
            continue;
        }
        let (_, t_reply) = subject_of(nodes, t);
        if nodes[t].msg.is_none() && nodes[r].msg.is_none() {
            let kids = std::mem::take(&mut nodes[r].children);
            for k in kids {
                set_parent(nodes, k, t);
            }
        } else if nodes[t].msg.is_none() || (reply && !t_reply) {
            set_parent(nodes, r, t);
        } else {
            // Neither is a dummy: both become children of a new dummy.
            nodes.push(Node::default());
            let d = nodes.len() - 1;
            let (tp, rp) = (t, r);
            set_parent(nodes, tp, d);
            set_parent(nodes, rp, d);
            if let Some(pos) = out.iter().position(|&x| x == t) {
                out[pos] = d;
            }
            table.insert(subj, d);
        }
    }
    out.retain(|&r| nodes[r].parent.is_none());
    out.sort_by_key(|&r| date_of(nodes, r));
    out
}

fn write_node(nodes: &[Node], n: usize, msgs: &[ThreadMessage], out: &mut String, first: bool) {
    let kids = &nodes[n].children;
    match nodes[n].msg {
        Some(m) => {
            if !first {
                out.push(' ');
            }
            out.push_str(&msgs[m].n.to_string());
        }
        None if !first => out.push(' '),
        None => {}
    }
    match kids.len() {
        0 => {}
        1 if nodes[n].msg.is_some() => write_node(nodes, kids[0], msgs, out, false),
        _ => {
            if nodes[n].msg.is_some() {
                out.push(' ');
            }
            for &k in kids {
                out.push('(');
                write_node(nodes, k, msgs, out, true);
                out.push(')');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u32, id: &str, refs: &[&str], subject: &str, date: i64) -> ThreadMessage {
        ThreadMessage {
            n,
            message_id: id.into(),
            references: refs.iter().map(|s| s.to_string()).collect(),
            subject: subject.into(),
            date,
        }
    }

    #[test]
    fn subjects() {
        assert_eq!(
            base_subject("Re: Fwd: [list] Hello  world (fwd)"),
            ("HELLO WORLD".into(), true)
        );
        assert_eq!(base_subject("hello"), ("HELLO".into(), false));
        assert_eq!(base_subject("[Fwd: Re: x]"), ("X".into(), true));
        assert_eq!(base_subject("[list] Re: y"), ("Y".into(), true));
        assert_eq!(base_subject("Grüße ☀"), ("GRÜSSE ☀".into(), false));
        assert_eq!(base_subject("ü"), ("Ü".into(), false));
    }

    #[test]
    fn threads() {
        let msgs = vec![
            m(1, "a", &[], "Lunch", 10),
            m(2, "b", &[], "Other", 20),
            m(3, "c", &["a"], "Re: Lunch", 30),
            m(4, "d", &["a", "c"], "Re: Lunch", 40),
            m(5, "e", &["a"], "Re: Lunch", 50),
            m(6, "f", &[], "Fwd: Other", 60),
        ];
        assert_eq!(thread(&msgs, Algorithm::References), "(1 (3 4)(5))(2 6)");
        assert_eq!(thread(&msgs, Algorithm::Refs), "(2)(1 (3 4)(5))(6)");
        assert_eq!(thread(&msgs, Algorithm::OrderedSubject), "(1 (3)(4)(5))(2 6)");
    }
}
