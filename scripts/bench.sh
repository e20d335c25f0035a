#!/usr/bin/env bash
# End-to-end bench (direct Dovecot vs the proxy, same run) and the criterion
# micro-benches. Extra arguments go to the e2e bench, e.g. --messages 2000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh isync
# Release builds in their own target dir: they never wait for the test builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/imap-time-machine/target-release}
# 1,000 client connections need 2,000+ descriptors in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo bench --locked --bench e2e -- "$@"
if [ -z "${E2E_ONLY:-}" ]; then
  cargo bench --locked --bench framing
  cargo bench --locked --bench tree
fi
