#!/usr/bin/env bash
# A real Thunderbird, under Xvfb, against the proxy: it reads, deletes,
# copies and drags snapshot messages the way a person would, and what it
# shows is checked, with Dovecot (direct IMAP) as the ground truth.
#
#   scripts/thunderbird-gui.sh          # prints PASS/FAIL per check; rc 0 if all pass
#
# Environment:
#   ITM_BIN        the imap-time-machine binary (default: cargo build --release
#                  into CARGO_TARGET_DIR, as scripts/demo.sh)
#   SCREENSHOT     where the screenshot goes (default docs/thunderbird.png)
#   UPSTREAM_FLAVOR  passed to scripts/upstream.sh (default | prod)
#   KEEP=1         keep the work directory (logs: proxy.log, thunderbird.log,
#                  imap.log = Thunderbird's IMAP log) instead of deleting it
#
# Needs thunderbird, Xvfb, xdotool, imagemagick (import), certutil
# (libnss3-tools, installed if missing), Dovecot (scripts/upstream.sh).
# Thunderbird is driven through Marionette (tests/thunderbird/drive.py);
# every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in tests/thunderbird
t0=$(date +%s)

for tool in thunderbird Xvfb xdotool import python3; do
  command -v "$tool" >/dev/null || { echo "thunderbird-gui: $tool is missing" >&2; exit 2; }
done
if ! command -v certutil >/dev/null; then
  echo "installing libnss3-tools ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq libnss3-tools >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq libnss3-tools >/dev/null
  }
fi
scripts/upstream.sh install

if [ -n "${ITM_BIN:-}" ]; then
  bin=$ITM_BIN
else
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/imap-time-machine/target-release}
  cargo build --release --locked
  bin=$CARGO_TARGET_DIR/release/imap-time-machine
fi
[ -x "$bin" ] || { echo "thunderbird-gui: no binary at $bin" >&2; exit 2; }
shot=${SCREENSHOT:-$root/docs/thunderbird.png}

work=$(mktemp -d /tmp/itm-thunderbird.XXXXXX)
chmod 755 "$work"
proxy_pid="" xvfb_pid="" tb_pid="" drive_pid=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$drive_pid" ]; then kill "$drive_pid" 2>/dev/null; wait "$drive_pid" 2>/dev/null; fi
  if [ -n "$tb_pid" ]; then kill -- "-$tb_pid" 2>/dev/null; fi
  if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null; fi
  scripts/upstream.sh stop "$work/upstream" 2>/dev/null
  # Thunderbird runs in its own session (setsid): its group is all of it.
  for _ in $(seq 1 50); do
    { [ -n "$tb_pid" ] && kill -0 -- "-$tb_pid" 2>/dev/null; } ||
      { [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; } || break
    sleep 0.1
  done
  if [ -n "$tb_pid" ]; then kill -9 -- "-$tb_pid" 2>/dev/null; fi
  if [ -n "$proxy_pid" ]; then kill -9 "$proxy_pid" 2>/dev/null; fi
  if [ -n "$xvfb_pid" ]; then kill "$xvfb_pid" 2>/dev/null; wait "$xvfb_pid" 2>/dev/null; fi
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r dovecot_port tls_port starttls_port marionette_port <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"

# --- Dovecot with the fixture mail ------------------------------------------
scripts/upstream.sh start "$work/upstream" "$dovecot_port" / >/dev/null
python3 scripts/seed.py --port "$dovecot_port" >/dev/null

# --- the proxy: yesterday's snapshot first, then serve (snapshots today) -----
python3 tests/thunderbird/make_config.py config.toml "$work/config.toml" \
  --tls "$tls_port" --starttls "$starttls_port" --upstream "$dovecot_port" --dir "$work"
older=$(TZ=Europe/Berlin date -d '1 day ago' +%F)
"$bin" snapshot -c "$work/config.toml" --user alice --label "$older" >"$work/snapshot-older.log" 2>&1
RUST_LOG=${RUST_LOG:-info} "$bin" serve -c "$work/config.toml" >"$work/proxy.log" 2>&1 &
proxy_pid=$!
# Only once serve listens on its admin socket: before that the CLI would open
# the store itself and hold serve's lock.
today=""
for _ in $(seq 1 150); do
  if [ -S "$work/admin.sock" ] && (exec 3<>"/dev/tcp/127.0.0.1/$tls_port") 2>/dev/null &&
    snaps=$("$bin" snapshots -c "$work/config.toml" 2>/dev/null); then
    today=$(awk -v o="$older" '$1 == "alice" && $2 > o {print $2}' <<<"$snaps" | sort | tail -1)
    [ -n "$today" ] && break
  fi
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy.log" >&2; exit 1; }
  sleep 0.2
done
[ -n "$today" ] || { echo "thunderbird-gui: the proxy took no snapshot of today" >&2; exit 1; }

# --- Xvfb and a fresh Thunderbird profile -------------------------------------
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$work/display" >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 1 100); do [ -s "$work/display" ] && break; sleep 0.1; done
[ -s "$work/display" ] || { echo "thunderbird-gui: Xvfb did not start" >&2; cat "$work/xvfb.log" >&2; exit 1; }
display=:$(tr -d '\n' <"$work/display")

profile=$work/profile
mkdir -p "$profile"
cp tests/thunderbird/user.js "$profile/user.js"
echo "user_pref(\"marionette.port\", $marionette_port);" >>"$profile/user.js"
certutil -N -d "sql:$profile" --empty-password
certutil -A -n itm-ca -t "C,," -i certs/ca.pem -d "sql:$profile"

DISPLAY=$display MOZ_CRASHREPORTER_DISABLE=1 MOZ_LOG=IMAP:5,timestamp MOZ_LOG_FILE="$work/imap.log" \
  setsid thunderbird -profile "$profile" -no-remote --marionette -remote-allow-system-access \
  >"$work/thunderbird.log" 2>&1 </dev/null &
tb_pid=$!

# --- the checks -----------------------------------------------------------------
# In the background, so that a signal to this script is handled at once.
rc=0
timeout 240 python3 tests/thunderbird/drive.py \
  --marionette "$marionette_port" --proxy "$tls_port" --dovecot "$dovecot_port" \
  --ca "$root/certs/ca.pem" --config "$work/config.toml" --bin "$bin" \
  --today "$today" --older "$older" --display "$display" --screenshot "$shot" \
  --imap-log "$work/imap.log" &
drive_pid=$!
wait "$drive_pid" || rc=$?
drive_pid=""

# Every tagged NO/BAD Thunderbird got, with the command it answered.
python3 - "$work"/imap.log* <<'PY' || true
import re, sys
sent, seen = {}, set()
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        m = re.search(r"IMAP ([0-9a-f]+):[^:]*:[^:]*:SendData: (\S+) (.*)$", line)
        if m:
            sent[(m.group(1), m.group(2))] = m.group(3)[:80]
            continue
        m = re.search(r"IMAP ([0-9a-f]+):[^:]*:[^:]*:CreateNewLineFromSocket: (\S+) (NO|BAD) (.*)$", line)
        if m:
            cmd = sent.get((m.group(1), m.group(2)), "?")
            key = (cmd, m.group(3), m.group(4)[:100])
            if key not in seen:
                seen.add(key)
                print(f"INFO Thunderbird got {m.group(3)}: {cmd} -> {m.group(4)[:140]}")
if not seen:
    print("INFO Thunderbird got no NO/BAD answer")
PY
[ -f "$shot" ] && echo "INFO screenshot $shot"
echo "INFO wall time $(($(date +%s) - t0)) s"
exit "$rc"
