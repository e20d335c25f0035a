#!/usr/bin/env bash
# The whole test suite: installs what the tests need (Dovecot), then runs
# every unit and integration test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/upstream.sh install
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 >/dev/null; }
# A target dir outside the clone, shared by checkouts on this machine.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/imap-time-machine/target}
cargo test --locked "$@"
