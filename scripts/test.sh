#!/usr/bin/env bash
# The whole test suite: installs what the tests need (scripts/deps.sh), then runs
# every unit and integration test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh isync neomutt tmux offlineimap3 prometheus
# A target dir outside the clone, shared by checkouts on this machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/imap-time-machine/target}
# The structure rules (no import cycles, status lines only in the response
# module), then every test of the workspace (the proxy and crates/imap).
python3 scripts/check-structure.py
cargo test --locked --workspace "$@"
# The suites that pass in front of Cyrus IMAP too (docs/UPSTREAMS.md), each
# starting its own Cyrus under a temp dir. deleted, fetch_response, mime_fuzz
# and tree still differ from Cyrus's own answers (issue 12).
cyrus_suites=(capabilities cli clients deleted fetch_response limits mbsync mime_fuzz ops passthrough restore sections session snapshot snapshot_cli transcripts tree)
scripts/cyrus.sh install
tests=()
for t in "${cyrus_suites[@]}"; do tests+=(--test "$t"); done
ITM_UPSTREAM=cyrus cargo test --locked "${tests[@]}" "$@"
