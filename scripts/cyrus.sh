#!/usr/bin/env bash
# A self-contained Cyrus IMAP on loopback: the second upstream for the tests
# (same interface as scripts/upstream.sh, which runs Dovecot).
#
#   scripts/cyrus.sh start DIR PORT [SEPARATOR]   # SEPARATOR: / (default) or .
#   scripts/cyrus.sh stop DIR
#   scripts/cyrus.sh install                      # just make sure Cyrus is there
#
# Install (cached; never touches Dovecot): apt-get installs cyrus-common
# sasl2-bin cyrus-admin cyrus-clients libeatmydata1; imapd and idled come from
# `apt-get download cyrus-imapd` (same version as cyrus-common), unpacked into
# CYRUS_CACHE/VERSION (default /var/cache/imap-time-machine/cyrus): installing
# the cyrus-imapd package would remove dovecot-imapd (both provide
# imap-server). Installing the MTA cyrus-common needs brings exim4 along.
#
# Everything (imapd.conf, cyrus.conf, sasldb, spool, databases, sockets,
# pid files, log) lives in DIR, so instances in different DIRs on different
# ports run side by side. Must run as root; Cyrus's processes drop to user
# cyrus (group mail). start returns once the master owns PORT, the mailboxes
# exist and alice can log in; it fails (and cleans up) if PORT is taken.
#   DIR/cyrus.log        the instance's syslog (Cyrus logs nowhere else): in a
#                        private mount namespace, an overlay on /dev makes
#                        /dev/log point to DIR/run/log.sock, read by a small
#                        python3 receiver. Without unshare/overlayfs it stays
#                        empty but for a note.
#   DIR/run/master.pid   the master; sessions are its `imapd` children (not
#                        `imap` as with Dovecot); idled pushes IDLE updates.
#   DIR/conf/socket/lmtp LMTP delivery (RCPT TO:<alice>).
#
# Users (sasldb, plain passwords, for tests and demos only): alice/alice-pw,
# bob/bob-pw, admin/admin-pw (a normal user, like Dovecot's), each with an
# INBOX; proxy user itm-master/master-secret (`proxyservers`): AUTHENTICATE
# PLAIN with authorization identity alice and authentication identity
# itm-master ("alice\0itm-master\0master-secret") logs in as alice, with
# alice's rights only; LOGIN cannot do this (no `alice*itm-master`). Cyrus
# administrator (creates the mailboxes): cyrus/cyrus-pw. Failed logins answer
# at once (failedloginpause: 0).
#
# SEPARATOR "/": unixhierarchysep + altnamespace, NAMESPACE (("" "/"))
# (("Other Users/" "/")) (("Shared Folders/" "/")), folders Work/Projects.
# SEPARATOR ".": neither, NAMESPACE (("INBOX." ".")) (("user." ".")) (("" ".")),
# folders INBOX.Work.Projects, like Courier.
#
# Optional environment: UPSTREAM_IMAPS_PORT, UPSTREAM_CERT, UPSTREAM_KEY turn
# on TLS (STARTTLS on PORT, implicit TLS on UPSTREAM_IMAPS_PORT);
# CYRUS_FSYNC=1 keeps Cyrus's fsyncs (by default libeatmydata drops them:
# APPEND is ~2-3x faster); CYRUS_START_TIMEOUT (seconds, default 30);
# CYRUS_CACHE (see above).
set -euo pipefail

CACHE=${CYRUS_CACHE:-/var/cache/imap-time-machine/cyrus}
LIBEXEC=/usr/lib/cyrus/bin
PACKAGES=(cyrus-common sasl2-bin cyrus-admin cyrus-clients libeatmydata1)
# Debian's python3 first: a pyenv shim takes ~0.3 s to start.
PY=$(command -v /usr/bin/python3 || command -v python3)

cyrus_version() { dpkg-query -W -f='${Version}' cyrus-common 2>/dev/null || true; }

# The unpacked cyrus-imapd of the installed cyrus-common's version, if any.
bin_dir() {
  local v
  v=$(cyrus_version)
  [ -n "$v" ] && [ -x "$CACHE/$v/usr/lib/cyrus/bin/imapd" ] && echo "$CACHE/$v/usr/lib/cyrus/bin"
  return 0
}

installed() {
  dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1 && [ -n "$(bin_dir)" ]
}

install_cyrus() {
  if installed; then return 0; fi
  mkdir -p "$CACHE"
  # Tests may start several instances at once: one installer at a time.
  exec 9>"$CACHE/.lock"
  flock 9
  if installed; then exec 9>&-; return 0; fi
  echo "installing Cyrus IMAP ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  local had_dovecot=no
  dpkg -s dovecot-imapd >/dev/null 2>&1 && had_dovecot=yes
  if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null
      apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    }
    # The package may start a system instance (from /etc/imapd.conf); ours
    # never needs it.
    systemctl stop cyrus-imapd >/dev/null 2>&1 || service cyrus-imapd stop >/dev/null 2>&1 || true
  fi
  local v tmp
  v=$(cyrus_version)
  [ -n "$v" ] || { echo "cyrus.sh: cyrus-common is not installed" >&2; exit 1; }
  tmp=$(mktemp -d)
  # Same version as cyrus-common (imapd depends on it exactly).
  (cd "$tmp" && apt-get download -qq "cyrus-imapd=$v" >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null
    (cd "$tmp" && apt-get download -qq "cyrus-imapd=$v" >/dev/null)
  }
  rm -rf "$CACHE/$v.new"
  dpkg-deb -x "$tmp"/cyrus-imapd_*.deb "$CACHE/$v.new"
  rm -rf "$tmp" "${CACHE:?}/${v:?}"
  mv "$CACHE/$v.new" "$CACHE/$v"
  if [ "$had_dovecot" = yes ] && ! dpkg -s dovecot-imapd >/dev/null 2>&1; then
    echo "cyrus.sh: installing Cyrus removed dovecot-imapd" >&2
    exit 1
  fi
  exec 9>&-
}

write_config() {
  local dir=$1 port=$2 sep=$3 bin=$4
  local conf=$dir/imapd.conf unixsep altns tls_lines="" imaps_line=""
  if [ "$sep" = "/" ]; then unixsep=yes altns=yes; else unixsep=no altns=no; fi
  if [ -n "${UPSTREAM_CERT:-}" ]; then
    install -o cyrus -g mail -m 600 "$UPSTREAM_CERT" "$dir/conf/tls-cert.pem"
    install -o cyrus -g mail -m 600 "${UPSTREAM_KEY:?UPSTREAM_KEY must go with UPSTREAM_CERT}" "$dir/conf/tls-key.pem"
    tls_lines="tls_server_cert: $dir/conf/tls-cert.pem
tls_server_key: $dir/conf/tls-key.pem"
    if [ -n "${UPSTREAM_IMAPS_PORT:-}" ] && [ "$UPSTREAM_IMAPS_PORT" != 0 ]; then
      imaps_line="  imaps cmd=\"$bin/imapd -s -C $conf\" listen=\"127.0.0.1:$UPSTREAM_IMAPS_PORT\" proto=tcp4 prefork=1"
    fi
  fi
  cat >"$conf" <<EOF
# Written by scripts/cyrus.sh: a private test instance.
configdirectory: $dir/conf
defaultpartition: default
partition-default: $dir/spool
sievedir: $dir/sieve
temp_path: $dir/tmp
servername: localhost
syslog_prefix: itm-cyrus-$port
virtdomains: off
unixhierarchysep: $unixsep
altnamespace: $altns
admins: cyrus
proxyservers: itm-master
allowplaintext: yes
sasl_mech_list: PLAIN LOGIN
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/conf/sasldb2
failedloginpause: 0
munge8bit: no
delete_mode: immediate
expunge_mode: immediate
master_bind_errors_fatal: yes
$tls_lines
EOF
  cat >"$dir/cyrus.conf" <<EOF
# Written by scripts/cyrus.sh. Every command names the instance's
# imapd.conf: the children do not inherit master's -C.
START {
  recover cmd="$LIBEXEC/ctl_cyrusdb -C $conf -r"
}
SERVICES {
  imap cmd="$bin/imapd -C $conf" listen="127.0.0.1:$port" proto=tcp4 prefork=2
$imaps_line
  lmtpunix cmd="$LIBEXEC/lmtpd -C $conf" listen="$dir/conf/socket/lmtp"
}
EVENTS {
  checkpoint cmd="$LIBEXEC/ctl_cyrusdb -C $conf -c" period=30
}
DAEMON {
  idled cmd="$bin/idled -C $conf"
}
EOF
}

write_users() {
  local db=$1/conf/sasldb2 user pw
  rm -f "$db"
  # The realm is servername (localhost): Cyrus asks SASL for user@localhost.
  for user in alice:alice-pw bob:bob-pw admin:admin-pw itm-master:master-secret cyrus:cyrus-pw; do
    pw=${user#*:}
    printf '%s' "$pw" | saslpasswd2 -f "$db" -p -c -u localhost "${user%%:*}"
  done
  chown cyrus:mail "$db"
  chmod 600 "$db"
}

# Cyrus logs to syslog only: a tiny syslog receiver on DIR/run/log.sock
# writes DIR/cyrus.log.
start_logger() {
  local dir=$1
  rm -f "$dir/run/log.sock"
  setsid "$PY" -c '
import os, re, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
f = open(out, "ab", buffering=0)
while True:
    d = s.recv(65536)
    f.write(re.sub(rb"^<\d+>", b"", d).rstrip(b"\n\0") + b"\n")
' "$dir/run/log.sock" "$dir/cyrus.log" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/run/syslog.pid"
  for _ in $(seq 1 100); do
    [ -S "$dir/run/log.sock" ] && return 0
    sleep 0.02
  done
  echo "cyrus.sh: syslog receiver did not start" >&2
  return 1
}

start_master() {
  local dir=$1 lib pre=()
  # Cyrus fsyncs every message and index write (~4 per APPEND); a test
  # server needs none of it. libeatmydata (Debian) turns them into no-ops.
  if [ "${CYRUS_FSYNC:-0}" != 1 ]; then
    for lib in /usr/lib/*/libeatmydata.so.1 /usr/lib/libeatmydata.so.1; do
      if [ -e "$lib" ]; then pre=(env "LD_PRELOAD=$lib${LD_PRELOAD:+:$LD_PRELOAD}"); break; fi
    done
  fi
  local master=("${pre[@]}" /usr/lib/cyrus/bin/master -C "$dir/imapd.conf" -M "$dir/cyrus.conf"
    -p "$dir/run/master.pid" -l 1024 -d)
  # In a private mount namespace, an overlay on /dev gives this instance its
  # own /dev/log (-> DIR/run/log.sock); the system's /dev is untouched.
  if unshare --mount --propagation private true 2>/dev/null; then
    mkdir -p "$dir/ns/up" "$dir/ns/work"
    # shellcheck disable=SC2016  # expanded by the inner sh
    unshare --mount --propagation private -- sh -c '
      dir=$1; shift
      if mount -t overlay itm-cyrus-dev -o "lowerdir=/dev,upperdir=$dir/ns/up,workdir=$dir/ns/work" /dev 2>/dev/null; then
        ln -sfn "$dir/run/log.sock" /dev/log
      else
        echo "cyrus.sh: no overlayfs on /dev: no log" >>"$dir/cyrus.log"
      fi
      exec "$@"' sh "$dir" "${master[@]}" </dev/null >/dev/null 2>>"$dir/master.err"
  else
    echo "cyrus.sh: no mount namespace: no log" >>"$dir/cyrus.log"
    "${master[@]}" </dev/null >/dev/null 2>>"$dir/master.err"
  fi
}

# Waits until PORT answers, creates the users' mailboxes as the Cyrus admin,
# and checks that alice can log in and select her INBOX.
wait_ready() {
  local dir=$1 port=$2 sep=$3
  "$PY" - "$dir" "$port" "$sep" "${CYRUS_START_TIMEOUT:-30}" <<'EOF'
import os, socket, sys, time
dir, port, sep, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
deadline = time.monotonic() + timeout
fail = "cyrus.sh: Cyrus on port %d did not start (see %s/cyrus.log)" % (port, dir)

started = time.monotonic()

def master_pid():
    """The running master's pid, or None (not yet written, or exited)."""
    try:
        pid = int(open(os.path.join(dir, "run/master.pid")).read().strip())
        # Orphaned, it stays a zombie until init reaps it.
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return None
        return pid
    except (OSError, ValueError, IndexError):
        return None

def owns_port(pid):
    """Whether `pid` listens on 127.0.0.1:port (not another server there)."""
    want = "0100007F:%04X" % port
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want and fields[3] == "0A":
                inodes.add("socket:[%s]" % fields[9])
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in inodes:
                return True
        except OSError:
            pass
    return False

class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.s.makefile("rb")
        self.n = 0
        greeting = self.f.readline()
        if not greeting.startswith(b"* OK"):
            raise OSError("greeting: %r" % greeting)
    def cmd(self, text):
        self.n += 1
        tag = b"r%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = self.f.readline()
            if not line:
                raise OSError("connection closed")
            if line.startswith(tag + b" "):
                return line.decode(errors="replace").rstrip()

# The master binds the port itself (then forks imapd): wait for that, so a
# port taken by someone else fails instead of talking to the wrong server.
while True:
    pid = master_pid()
    if pid and owns_port(pid):
        break
    gone = os.path.exists(os.path.join(dir, "run/master.pid")) or time.monotonic() - started > 5
    if time.monotonic() > deadline or (not pid and gone):
        sys.exit(fail)
    time.sleep(0.02)
while True:
    try:
        c = Conn()
        break
    except OSError as e:
        if time.monotonic() > deadline or not master_pid():
            sys.exit("%s: %s" % (fail, e))
        time.sleep(0.05)

def ok(line, what):
    if line.split(" ")[1:2] != ["OK"]:
        sys.exit("cyrus.sh: %s: %s" % (what, line))

ok(c.cmd('LOGIN "cyrus" "cyrus-pw"'), "admin login")
for user in ("alice", "bob", "admin"):
    # Admins see the standard namespace, whatever altnamespace says.
    line = c.cmd('CREATE "user%s%s"' % (sep, user))
    if "ALREADYEXISTS" not in line and "already exists" not in line:
        ok(line, "CREATE user%s%s" % (sep, user))
c.cmd("LOGOUT")
c = Conn()
ok(c.cmd('LOGIN "alice" "alice-pw"'), "alice login")
ok(c.cmd("EXAMINE INBOX"), "alice EXAMINE INBOX")
c.cmd("LOGOUT")
EOF
}

stop_instance() {
  local dir=$1 pid
  dir=$(cd "$dir" 2>/dev/null && pwd) || return 0
  if [ -f "$dir/run/master.pid" ]; then
    pid=$(cat "$dir/run/master.pid")
    # Master ends its children (imapd, idled, lmtpd) on SIGTERM.
    if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
      # Gone, or a zombie: the master is orphaned (it daemonized) and init
      # may take a second or two to reap it.
      for _ in $(seq 1 250); do
        case "$(ps -o stat= -p "$pid" 2>/dev/null || true)" in "" | Z*) break ;; esac
        sleep 0.02
      done
    fi
    rm -f "$dir/run/master.pid"
  fi
  # Stragglers of this instance only: every Cyrus command line names
  # DIR/imapd.conf.
  pkill -KILL -f -- "-C $dir/imapd.conf" 2>/dev/null || true
  if [ -f "$dir/run/syslog.pid" ]; then
    kill "$(cat "$dir/run/syslog.pid")" 2>/dev/null || true
    rm -f "$dir/run/syslog.pid"
  fi
}

cmd=${1:-}
case "$cmd" in
  install)
    install_cyrus
    ;;
  start)
    dir=${2:?usage: cyrus.sh start DIR PORT [SEPARATOR]}
    port=${3:?usage: cyrus.sh start DIR PORT [SEPARATOR]}
    sep=${4:-/}
    case "$sep" in /|.) ;; *) echo "separator must be / or ." >&2; exit 2 ;; esac
    case "$dir" in *[[:space:]\"]*) echo "cyrus.sh: DIR must not contain spaces or quotes" >&2; exit 2 ;; esac
    install_cyrus
    bin=$(bin_dir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    # A leftover instance in DIR (e.g. a failed start) goes first.
    stop_instance "$dir"
    # The configdirectory layout of Cyrus's mkimap.
    mkdir -p "$dir"/conf/{db,lock,log,msg,proc,quota,socket,user} \
      "$dir/spool" "$dir/sieve" "$dir/tmp" "$dir/run"
    # Cyrus's processes run as cyrus:mail and must reach all of it.
    chmod 755 "$dir"
    chown -R cyrus:mail "$dir/conf" "$dir/spool" "$dir/sieve" "$dir/tmp" "$dir/run"
    write_config "$dir" "$port" "$sep" "$bin"
    write_users "$dir"
    : >"$dir/master.err"
    start_logger "$dir"
    if ! start_master "$dir" || ! wait_ready "$dir" "$port" "$sep"; then
      cat "$dir/master.err" >&2
      stop_instance "$dir"
      exit 1
    fi
    ;;
  stop)
    dir=${2:?usage: cyrus.sh stop DIR}
    stop_instance "$dir"
    ;;
  *)
    echo "usage: $0 start DIR PORT [SEPARATOR] | stop DIR | install" >&2
    exit 2
    ;;
esac
