//! ENABLE (forwarded): the session remembers CONDSTORE/QRESYNC, so tree
//! folders report modseqs as the upstream would.

use super::super::io::{Io, Outcome, Request};
use super::super::state::State;

pub async fn before_forward(st: &mut State, _: &mut dyn Io, req: &Request<'_>) -> Outcome {
    let text = String::from_utf8_lossy(req.bytes).to_ascii_uppercase();
    if text.contains("CONDSTORE") || text.contains("QRESYNC") {
        st.enable_condstore();
    }
    Ok(())
}
