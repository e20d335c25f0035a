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
# The cluster store's engines (docs/OPERATIONS.md, "A fleet on the cluster
# store"): one real PostgreSQL 15 and one real three-node Garage for the
# whole run, on loopback under a temp dir, stopped when this script exits;
# each test gets its own schema and bucket prefix. tests/fleet.rs and
# tests/migrate.rs always use it; the suites in `cluster_suites` run on it
# once more at the end.
cluster_suites=(cli clients deleted fetch_response mbsync mime_fuzz ops restore sections session snapshot snapshot_cli store_engines tree)
scripts/cluster.sh install
cluster_dir=$(mktemp -d /tmp/itm-cluster.XXXXXX)
trap 'scripts/cluster.sh stop "$cluster_dir" || true; rm -rf "$cluster_dir"' EXIT
scripts/cluster.sh start "$cluster_dir" $$
export ITM_CLUSTER=$cluster_dir
cargo test --locked --workspace "$@"
# Every suite but `package` (which installs the .deb) in front of Cyrus IMAP
# too (docs/UPSTREAMS.md), each test starting its own Cyrus under a temp dir.
cyrus_suites=(capabilities cli clients deleted fetch_response limits mbsync mime_fuzz ops passthrough restore sections session snapshot snapshot_cli transcripts tree)
scripts/cyrus.sh install
tests=()
for t in "${cyrus_suites[@]}"; do tests+=(--test "$t"); done
ITM_UPSTREAM=cyrus cargo test --locked "${tests[@]}" "$@"

# The suites that touch the store, on the cluster store too (see above).
tests=()
for t in "${cluster_suites[@]}"; do tests+=(--test "$t"); done
ITM_STORE=cluster cargo test --locked "${tests[@]}" "$@"
