#!/usr/bin/env bash
# Installs a .deb of imap-time-machine on this machine and checks it the way
# an administrator would use it; then removes and purges it again.
#
#   sudo scripts/package-test.sh DEB_PATH
#
# Purges any previous install first. Checks: dpkg -i; the service user, the
# modes of the store, config and key; the conffile; the enable symlink;
# `systemd-analyze verify` of the unit; an upgrade (same .deb again) keeps the
# admin's edits and the certificate. Then, with a throwaway Dovecot
# (scripts/upstream.sh) and the installed config edited by sed, runs the
# installed binary as the service user the way the unit does, logs in over
# TLS (python3 imaplib), LISTs, takes a snapshot through the admin socket,
# sees `Time Machine/<today>` listed, stops it with SIGTERM (exit 0); then
# `dpkg --remove` (data, config, user stay) and `dpkg --purge` (all gone).
#
# Must run as root; changes the system (installs, then purges the package).
# ITM_PKG_TEST_KEEP=1 leaves the package installed when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PKG=imap-time-machine
SVC_USER=imap-time-machine
BIN=/usr/bin/imap-time-machine
UNIT=/lib/systemd/system/imap-time-machine.service
ETC=/etc/imap-time-machine
CONF=$ETC/config.toml
STATE=/var/lib/imap-time-machine
RUN=/run/imap-time-machine
WANTS=/etc/systemd/system/multi-user.target.wants/imap-time-machine.service

step() { echo "==> $*"; }
ok() { echo "    ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

deb=${1:-}
[ -n "$deb" ] || { echo "usage: $0 DEB_PATH" >&2; exit 2; }
[ -f "$deb" ] || fail "no such file: $deb"
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, runuser)"
for tool in dpkg dpkg-query systemd-analyze runuser python3 openssl stat getent; do
  command -v "$tool" >/dev/null || fail "$tool not found"
done

work=$(mktemp -d /tmp/itm-pkgtest.XXXXXX)
# Dovecot's unprivileged processes must reach its dir: not under 0700 $work.
upstream_dir=$(mktemp -d /tmp/itm-pkgtest-upstream.XXXXXX)
log=$work/serve.log
upstream_started=0 serve_pid="" passed=0

cleanup() {
  local rc=$?
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ "$upstream_started" = 1 ]; then
    local master
    master=$(cat "$upstream_dir/run/master.pid" 2>/dev/null || true)
    bash scripts/upstream.sh stop "$upstream_dir" || true
    # Bounded wait for Dovecot's master to go before its dir does.
    if [ -n "$master" ]; then
      for _ in $(seq 1 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  if [ "$passed" != 1 ]; then
    if [ -s "$log" ]; then
      echo "--- last lines of the proxy's log ($log) ---" >&2
      tail -n 30 "$log" >&2
    fi
    if [ "${ITM_PKG_TEST_KEEP:-}" = 1 ]; then
      echo "ITM_PKG_TEST_KEEP=1: $PKG left installed, files in $work" >&2
      exit "$rc"
    fi
    dpkg --purge "$PKG" >/dev/null 2>&1 || true
  fi
  rm -rf "$work" "$upstream_dir"
  exit "$rc"
}
trap cleanup EXIT

# "MODE OWNER:GROUP" of PATH must be WANT.
expect_stat() {
  local path=$1 want=$2 have
  [ -e "$path" ] || fail "$path does not exist"
  have=$(stat -c '%a %U:%G' "$path")
  [ "$have" = "$want" ] || fail "$path is $have, want $want"
  ok "$path $have"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

installed_status() {
  dpkg-query -W -f='${db:Status-Abbrev}' "$PKG" 2>/dev/null || true
}

step "purge any previous install"
if [ -n "$(installed_status)" ]; then
  dpkg --purge "$PKG" >/dev/null
  ok "purged the previous $PKG"
fi
[ -z "$(installed_status)" ] || fail "$PKG still known to dpkg after purge: $(installed_status)"

step "dpkg -i $deb"
dpkg -i "$deb" >"$work/dpkg-install.out" 2>&1 || { cat "$work/dpkg-install.out" >&2; fail "dpkg -i failed"; }
sed 's/^/    | /' "$work/dpkg-install.out"
[ "$(installed_status)" = "ii " ] || fail "dpkg status is '$(installed_status)', want 'ii '"
grep -q "NOT started" "$work/dpkg-install.out" || fail "postinst did not say that the service is not started"
ok "installed ($(dpkg-query -W -f='${Version}' "$PKG"))"

step "files, user, modes"
[ -x "$BIN" ] || fail "$BIN missing or not executable"
"$BIN" --version >/dev/null || fail "$BIN --version failed"
ok "$BIN ($("$BIN" --version))"
[ -f "$UNIT" ] || fail "$UNIT missing"
ok "$UNIT"
for doc in README.md OPERATIONS.md CONFIG.md copyright; do
  [ -f "/usr/share/doc/$PKG/$doc" ] || fail "/usr/share/doc/$PKG/$doc missing"
done
ok "/usr/share/doc/$PKG/{README.md,OPERATIONS.md,CONFIG.md,copyright}"
pw=$(getent passwd "$SVC_USER") || fail "user $SVC_USER missing"
IFS=: read -r _ _ uid gid _ home shell <<<"$pw"
[ "$uid" -lt 1000 ] || fail "$SVC_USER has uid $uid, not a system user"
[ "$home" = "$STATE" ] || fail "$SVC_USER has home $home, want $STATE"
[ "$(getent group "$SVC_USER" | cut -d: -f3)" = "$gid" ] || fail "$SVC_USER's primary group is not $SVC_USER"
case "$shell" in */nologin|/bin/false) ;; *) fail "$SVC_USER has a login shell: $shell" ;; esac
ok "user $SVC_USER uid=$uid gid=$gid home=$home shell=$shell"
expect_stat "$STATE" "700 $SVC_USER:$SVC_USER"
expect_stat "$ETC" "750 root:$SVC_USER"
expect_stat "$CONF" "640 root:$SVC_USER"
expect_stat "$ETC/tls" "750 root:$SVC_USER"
expect_stat "$ETC/tls/key.pem" "640 root:$SVC_USER"
expect_stat "$ETC/tls/cert.pem" "644 root:$SVC_USER"
openssl x509 -in "$ETC/tls/cert.pem" -noout -checkend 86400 >/dev/null ||
  fail "the generated certificate is invalid or expires within a day"
[ "$(openssl x509 -in "$ETC/tls/cert.pem" -noout -pubkey)" = "$(openssl pkey -in "$ETC/tls/key.pem" -pubout)" ] ||
  fail "the generated key does not match the certificate"
ok "self-signed certificate: $(openssl x509 -in "$ETC/tls/cert.pem" -noout -subject), matches the key"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q " $CONF " || fail "$CONF is not a conffile"
ok "$CONF is a conffile"
[ -L "$WANTS" ] || fail "not enabled: $WANTS missing"
[ -e "/var/lib/systemd/deb-systemd-helper-enabled/imap-time-machine.service.dsh-also" ] ||
  fail "deb-systemd-helper has no state for the unit (purge could not clean up)"
ok "enabled: $WANTS -> $(readlink "$WANTS")"
# (Processes of $BIN only: tests may be running a binary of their own.)
for p in $(pgrep -x imap-time-machi || true); do
  if [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$BIN" ]; then fail "the service was started on install (pid $p)"; fi
done
ok "not started"

step "systemd-analyze verify $UNIT"
verify_out=$(systemd-analyze verify "$UNIT" 2>&1) || fail "systemd-analyze verify failed: $verify_out"
[ -z "$verify_out" ] || fail "systemd-analyze verify complains: $verify_out"
ok "clean"

step "check-config of the shipped config, as the service user"
runuser -u "$SVC_USER" -- "$BIN" check-config -c "$CONF" >"$work/check.out" 2>&1 ||
  { cat "$work/check.out" >&2; fail "check-config of the shipped config failed"; }
if grep -qi "readable by every account" "$work/check.out"; then fail "check-config warns about the config's mode"; fi
ok "$(tail -n1 "$work/check.out")"

step "every key of the shipped config, uncommented (its defaults), is accepted"
# Catches drift between the shipped config and the binary (an unknown key is
# an error). upstream.ca must name a file: kept commented without the bundle.
all_keys=$work/all-keys.toml
sed -E 's/^# ([a-z_]+ = )/\1/' "$CONF" >"$all_keys"
[ -f /etc/ssl/certs/ca-certificates.crt ] || sed -i 's/^ca = /# ca = /' "$all_keys"
chmod 600 "$all_keys"
n_keys=$(grep -cE '^[a-z_]+ = ' "$all_keys")
"$BIN" check-config -c "$all_keys" >"$work/check-all.out" 2>&1 ||
  { cat "$work/check-all.out" >&2; fail "check-config rejects the shipped config with every key uncommented"; }
ok "$n_keys keys: $(tail -n1 "$work/check-all.out")"

step "the shipped config shows every key the installed CONFIG.md documents"
python3 - "/usr/share/doc/$PKG/CONFIG.md" "$CONF" <<'PY' || fail "the shipped config and CONFIG.md disagree (see above)"
import re, sys
doc, conf = sys.argv[1], sys.argv[2]
documented = set()
for line in open(doc, encoding="utf-8"):
    if line.startswith("| `"):   # the key table: | `a.b`, `a.c` | default | meaning |
        documented |= set(re.findall(r"`([a-z_]+\.[a-z_]+)`", line.split("|")[1]))
shown, section = set(), None
for line in open(conf, encoding="utf-8"):
    m = re.match(r"^\[([a-z_]+)\]", line)
    if m:
        section = m.group(1)
        continue
    m = re.match(r"^(?:# )?([a-z_]+) = ", line)
    if m:
        shown.add(f"{section}.{m.group(1)}")
missing, extra = sorted(documented - shown), sorted(shown - documented)
if missing:
    print(f"    not in the shipped config: {missing}", file=sys.stderr)
if extra:
    print(f"    not documented in CONFIG.md: {extra}", file=sys.stderr)
if missing or extra or not documented:
    sys.exit(1)
print(f"    {len(documented)} keys, all shown")
PY
ok "config.toml matches CONFIG.md"

step "throwaway Dovecot (scripts/upstream.sh)"
up_port=$(free_port)
bash scripts/upstream.sh start "$upstream_dir" "$up_port" /
upstream_started=1
python3 scripts/seed.py --port "$up_port" >"$work/seed.out" 2>&1 || { cat "$work/seed.out" >&2; fail "seed.py failed"; }
ok "Dovecot on 127.0.0.1:$up_port, seeded with fixtures/"

step "edit $CONF as an admin would (sed)"
proxy_port=$(free_port)
while [ "$proxy_port" = "$up_port" ]; do proxy_port=$(free_port); done
sed -i \
  -e "s|^tls = \"0\\.0\\.0\\.0:993\"|tls = \"127.0.0.1:$proxy_port\"|" \
  -e "s|^address = \"127\\.0\\.0\\.1:143\"|address = \"127.0.0.1:$up_port\"|" \
  -e "s|^master_user = .*|master_user = \"itm-master\"|" \
  -e "s|^master_password = \"CHANGE-ME\"|master_password = \"master-secret\"|" \
  "$CONF"
for want in "tls = \"127.0.0.1:$proxy_port\"" "address = \"127.0.0.1:$up_port\"" \
            'master_user = "itm-master"' 'master_password = "master-secret"'; do
  grep -qxF "$want" "$CONF" || fail "editing $CONF did not give the line: $want"
done
ok "listen.tls 127.0.0.1:$proxy_port, upstream 127.0.0.1:$up_port, master itm-master"
expect_stat "$CONF" "640 root:$SVC_USER"

step "upgrade: dpkg -i the same .deb again keeps the edits and the certificate"
conf_sum=$(sha256sum <"$CONF")
cert_sum=$(sha256sum <"$ETC/tls/cert.pem")
dpkg -i "$deb" >"$work/dpkg-upgrade.out" 2>&1 || { cat "$work/dpkg-upgrade.out" >&2; fail "dpkg -i (upgrade) failed"; }
sed 's/^/    | /' "$work/dpkg-upgrade.out"
[ "$(installed_status)" = "ii " ] || fail "dpkg status is '$(installed_status)' after the upgrade, want 'ii '"
[ "$(sha256sum <"$CONF")" = "$conf_sum" ] || fail "the upgrade changed the edited $CONF"
[ "$(sha256sum <"$ETC/tls/cert.pem")" = "$cert_sum" ] || fail "the upgrade replaced the certificate"
expect_stat "$CONF" "640 root:$SVC_USER"
expect_stat "$STATE" "700 $SVC_USER:$SVC_USER"
ok "config and certificate unchanged"

step "serve as $SVC_USER, as the unit runs it"
# What systemd does for RuntimeDirectory=/RuntimeDirectoryMode= of the unit.
run_mode=$(sed -n 's/^RuntimeDirectoryMode=//p' "$UNIT")
[ -n "$run_mode" ] || fail "the unit has no RuntimeDirectoryMode"
rm -rf "$RUN"
install -d -m "$run_mode" -o "$SVC_USER" -g "$SVC_USER" "$RUN"
(umask 077; exec runuser -u "$SVC_USER" -- "$BIN" --config "$CONF" serve) >"$log" 2>&1 &
serve_pid=$!
ready=0
for _ in $(seq 1 300); do   # up to 30 s
  kill -0 "$serve_pid" 2>/dev/null || fail "serve exited before listening"
  if (exec 3<>"/dev/tcp/127.0.0.1/$proxy_port") 2>/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ "$ready" = 1 ] || fail "serve did not listen on 127.0.0.1:$proxy_port within 30 s"
bin_pid=$(pgrep -P "$serve_pid" -x imap-time-machi || true)
[ -n "$bin_pid" ] || fail "no imap-time-machine process under runuser ($serve_pid)"
[ "$(ps -o user= -p "$bin_pid" | tr -d ' ')" = "$SVC_USER" ] || fail "serve does not run as $SVC_USER"
ok "listening on 127.0.0.1:$proxy_port, pid $bin_pid, user $SVC_USER"
[ -S "$RUN/admin.sock" ] || fail "no admin socket at $RUN/admin.sock"
expect_stat "$RUN/admin.sock" "600 $SVC_USER:$SVC_USER"
if grep -qi "readable by every account" "$log"; then fail "serve warns that the config is readable by everyone"; fi

imap_check() {  # imap_check PORT DAY|-   (DAY: also require Time Machine/DAY)
  python3 - "$@" <<'PY'
import imaplib, ssl, sys
port, day = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=30)
typ, data = m.login("alice", "alice-pw")
assert typ == "OK", f"LOGIN: {typ} {data}"
typ, data = m.list()
assert typ == "OK", f"LIST: {typ} {data}"
names = [d.decode("utf-8", "replace") for d in data if d]
print(f"    LIST: {len(names)} folders")
def listed(name):
    return any(n.endswith(f'"{name}"') or n.endswith(f" {name}") for n in names)
assert listed("INBOX"), f"INBOX not listed: {names}"
assert listed("Time Machine"), f"Time Machine not listed: {names}"
if day != "-":
    assert listed(f"Time Machine/{day}"), f"Time Machine/{day} not listed: {names}"
    assert listed(f"Time Machine/{day}/INBOX"), f"Time Machine/{day}/INBOX not listed: {names}"
    typ, data = m.select(f'"Time Machine/{day}/INBOX"', readonly=True)
    assert typ == "OK", f"EXAMINE: {typ} {data}"
    print(f"    EXAMINE Time Machine/{day}/INBOX: {data[0].decode()} messages")
    assert int(data[0]) > 0, "the snapshot's INBOX is empty"
m.logout()
PY
}

step "log in over TLS as alice, LIST"
imap_check "$proxy_port" - || fail "IMAP login/LIST through the proxy failed"
ok "LOGIN OK, LIST OK, Time Machine listed"

step "snapshot through the admin socket (CLI as $SVC_USER)"
day=$(TZ=UTC date +%F)   # snapshots.timezone = "UTC" in the shipped config
runuser -u "$SVC_USER" -- "$BIN" -c "$CONF" snapshot --user alice >"$work/snapshot.out" 2>&1 ||
  { cat "$work/snapshot.out" >&2; fail "snapshot --user alice failed"; }
sed 's/^/    | /' "$work/snapshot.out"
expect_stat "$STATE/store" "700 $SVC_USER:$SVC_USER"
imap_check "$proxy_port" "$day" || fail "the snapshot of $day is not visible through the proxy"
ok "Time Machine/$day/INBOX listed and readable"

step "SIGTERM"
kill -TERM "$bin_pid"
rc=0
wait "$serve_pid" || rc=$?
serve_pid=""
[ "$rc" = 0 ] || fail "serve exited with status $rc after SIGTERM, want 0"
[ ! -e "$RUN/admin.sock" ] || fail "the admin socket is still there after exit"
ok "exit status 0"

step "dpkg --remove: binary and unit go, config, data and user stay"
dpkg --remove "$PKG" >"$work/dpkg-remove.out" 2>&1 || { cat "$work/dpkg-remove.out" >&2; fail "dpkg --remove failed"; }
[ "$(installed_status)" = "rc " ] || fail "dpkg status is '$(installed_status)', want 'rc '"
[ ! -e "$BIN" ] || fail "$BIN still there after remove"
[ ! -e "$UNIT" ] || fail "$UNIT still there after remove"
[ -f "$CONF" ] || fail "$CONF gone after remove (only purge may remove it)"
[ -f "$ETC/tls/key.pem" ] || fail "the key is gone after remove"
[ -d "$STATE/store" ] || fail "the store is gone after remove"
getent passwd "$SVC_USER" >/dev/null || fail "user $SVC_USER gone after remove"
ok "binary and unit gone; $CONF, $ETC/tls, $STATE/store, user kept"

step "dpkg --purge: everything goes but the snapshots (kept, and said so)"
dpkg --purge "$PKG" >"$work/dpkg-purge.out" 2>&1 || { cat "$work/dpkg-purge.out" >&2; fail "dpkg --purge failed"; }
sed 's/^/    | /' "$work/dpkg-purge.out"
[ -z "$(installed_status)" ] || fail "dpkg still knows $PKG: '$(installed_status)'"
dsh=/var/lib/systemd/deb-systemd-helper-enabled
for gone in "$BIN" "$UNIT" "$ETC" "$RUN" "$WANTS" "/usr/share/doc/$PKG" \
            "$dsh/imap-time-machine.service.dsh-also" "$dsh/multi-user.target.wants/imap-time-machine.service"; do
  if [ -e "$gone" ] || [ -L "$gone" ]; then fail "$gone still there after purge"; fi
done
grep -q "kept $STATE" "$work/dpkg-purge.out" || fail "purge did not say that it kept the store"
[ -d "$STATE/store" ] || fail "purge deleted the snapshot store"
getent passwd "$SVC_USER" >/dev/null || fail "purge deleted the user that owns the kept store"
ok "binary, unit, $ETC, enable symlink and its state gone; $STATE and its user kept"
rm -rf "$STATE"
deluser --system --quiet "$SVC_USER" >/dev/null 2>&1 || true
delgroup --system --quiet --only-if-empty "$SVC_USER" >/dev/null 2>&1 || true
if getent passwd "$SVC_USER" >/dev/null; then fail "user $SVC_USER could not be removed by hand"; fi

passed=1
echo "PASS: $deb"
