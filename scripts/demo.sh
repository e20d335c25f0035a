#!/usr/bin/env bash
# The demo: a loopback Dovecot with the fixture users and mail, then the
# proxy on config.toml. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
# The config holds the master password: only this account reads it.
chmod 600 config.toml
dir=.demo/upstream
scripts/upstream.sh stop "$dir" 2>/dev/null || true
rm -rf "$dir"
scripts/upstream.sh start "$dir" 11143 /
trap 'scripts/upstream.sh stop "$dir"' EXIT
python3 scripts/seed.py --port 11143
# Release builds in their own target dir: they never wait for the test builds.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/imap-time-machine/target-release}
cargo build --release --locked
cat <<TXT

Dovecot (upstream) on 127.0.0.1:11143, users alice/alice-pw, bob/bob-pw, admin/admin-pw.
The proxy listens on 127.0.0.1:10993 (implicit TLS) and 127.0.0.1:10143 (STARTTLS).
Try, in another terminal:

  curl --cacert certs/ca.pem -u alice:alice-pw 'imaps://localhost:10993/'              # folders
  curl --cacert certs/ca.pem -u alice:alice-pw 'imaps://localhost:10993/INBOX;UID=1'   # a message
  openssl s_client -quiet -CAfile certs/ca.pem -connect localhost:10993                # raw IMAP

or point a mail client at localhost:10993 (SSL/TLS) trusting certs/ca.pem.

The proxy snapshots alice, bob and admin when it starts (then nightly at
00:00 Europe/Berlin); while it runs, in another terminal:

  $CARGO_TARGET_DIR/release/imap-time-machine snapshots
  $CARGO_TARGET_DIR/release/imap-time-machine export --user alice --date \$(date +%F) --folder INBOX --uid 1

The snapshots show up as read-only folders:

  curl --cacert certs/ca.pem -u alice:alice-pw "imaps://localhost:10993/Time%20Machine/\$(TZ=Europe/Berlin date +%F)/INBOX;UID=1"

A restore request: APPEND a message with Subject "Restore <date>" to
"Time Machine/Restore Requests" as alice; admin/admin-pw confirms it by moving
it from "Time Machine/Admin/Pending" to "Time Machine/Admin/Confirm", or:

  $CARGO_TARGET_DIR/release/imap-time-machine restore list
  $CARGO_TARGET_DIR/release/imap-time-machine restore confirm 1 --by admin
TXT
"$CARGO_TARGET_DIR/release/imap-time-machine" serve -c config.toml
