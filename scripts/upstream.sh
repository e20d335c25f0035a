#!/usr/bin/env bash
# A self-contained Dovecot on loopback, for the demo, the tests and the benches.
#
#   scripts/upstream.sh start DIR PORT [SEPARATOR]   # SEPARATOR: / (default) or .
#   scripts/upstream.sh stop DIR
#   scripts/upstream.sh install                      # just make sure Dovecot is there
#
# Everything (config, state, logs, mail) lives in DIR. Users (passwd-file,
# plain passwords, for tests and demos only): alice/alice-pw, bob/bob-pw,
# admin/admin-pw; master user itm-master/master-secret (login as
# `alice*itm-master`). With SEPARATOR "." the personal namespace gets the
# prefix "INBOX." (Courier/Cyrus style).
#
# Optional environment: UPSTREAM_IMAPS_PORT, UPSTREAM_CERT, UPSTREAM_KEY turn
# on TLS (STARTTLS on PORT, implicit TLS on UPSTREAM_IMAPS_PORT).
#
# UPSTREAM_FLAVOR picks how Dovecot is configured:
#   default (or unset)  bare Dovecot: no ACL, no quota, no special-use folders.
#   prod                the way providers run it:
#     - mail_plugins acl quota (+ imap_acl imap_quota imap_zlib for imap):
#       CAPABILITY gains ACL RIGHTS=texk QUOTA (after login);
#     - global ACL file DIR/global-acl (acl = vfile:DIR/global-acl) granting
#       `owner` and `user=itm-master` lrwstipekxa on every mailbox. Without
#       the master line, with ACLs on, `alice*itm-master` is checked as
#       itm-master, is not the owner and gets "Mailbox doesn't exist: INBOX";
#       per-mailbox dovecot-acl files (SETACL) are merged in, but global
#       lines win, so an owner cannot restrict their own mailbox by SETACL.
#       To get a mailbox with only some rights, append a line to
#       DIR/global-acl, e.g. `Restricted user=alice lrs` (with ".":
#       `INBOX.Restricted ...`); new sessions see it at once. The master
#       login keeps full rights there, so it can fill the mailbox;
#     - quota count:"User quota", 1G storage (GETQUOTAROOT INBOX answers
#       QUOTAROOT INBOX "User quota");
#     - special-use folders Sent, Drafts, Trash, Junk, Archive, auto-created
#       and subscribed in the personal namespace (INBOX.Sent etc. with ".").
#   master-elsewhere    a misconfigured server, for the proxy's check after a
#     master login: `alice*itm-master` lands in another mailbox than alice's
#     own login: the master's own (mail_location ends in %{auth_user}), as on
#     a server that ignores the authorization identity (Courier's authlib).
#       They exist lazily: CREATE of one succeeds until it is first opened
#       (SELECT/STATUS), then answers NO [ALREADYEXISTS];
#     - a shared namespace "shared/<user>/" (or "shared.<user>." with "."):
#       NAMESPACE always lists it as the other users' namespace; LIST shows
#       it only once something is shared with the user (SETACL box bob lrs).
set -euo pipefail

install_dovecot() {
  if command -v dovecot >/dev/null 2>&1; then return 0; fi
  echo "installing dovecot-imapd ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq dovecot-imapd >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq dovecot-imapd >/dev/null
  }
  # The package may start a system instance; ours never needs it.
  systemctl stop dovecot >/dev/null 2>&1 || true
}

write_config() {
  local dir=$1 port=$2 sep=$3 flavor=$4
  local prefix="" ssl="no" ssl_lines="" imaps_port=0
  local mail_plugins="" imap_plugins="imap_zlib" prod_lines="" mail_user="%u"
  [ "$sep" = "." ] && prefix="INBOX."
  if [ -n "${UPSTREAM_CERT:-}" ]; then
    ssl="yes"
    ssl_lines="ssl_cert = <${UPSTREAM_CERT}
ssl_key = <${UPSTREAM_KEY}"
    imaps_port=${UPSTREAM_IMAPS_PORT:-0}
  fi
  [ "$flavor" = master-elsewhere ] && mail_user="%{auth_user}"
  if [ "$flavor" = prod ]; then
    mail_plugins="mail_plugins = \$mail_plugins acl quota"
    imap_plugins="imap_acl imap_quota imap_zlib"
    prod_lines=$(prod_config "$dir" "$sep")
  fi
  cat >"$dir/dovecot.conf" <<EOF
instance_name = itm-upstream-$port
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = $ssl
$ssl_lines
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_master_user_separator = *
login_trusted_networks = 127.0.0.0/8
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} lip=%l mpid=%e %c session=<%{session}>
first_valid_uid = 1
mail_location = maildir:$dir/mail/$mail_user
mail_fsync = never
default_client_limit = 10000
$mail_plugins
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/master-users
  master = yes
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN $dir/users
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$dir/home/%u
}
namespace inbox {
  inbox = yes
  separator = $sep
  prefix = $prefix
}
protocol imap {
  mail_max_userip_connections = 5000
  # Advertises COMPRESS=DEFLATE, which the proxy must hide from clients.
  mail_plugins = \$mail_plugins $imap_plugins
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
  }
  service_count = 0
  client_limit = 5000
  process_limit = 4
  process_min_avail = 1
}
service imap {
  process_limit = 3000
}
# All logins come from the proxy's address: no brute-force penalty for it
# (tests make deliberate failed logins).
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
$prod_lines
EOF
  cat >"$dir/users" <<EOF
alice:{PLAIN}alice-pw
bob:{PLAIN}bob-pw
admin:{PLAIN}admin-pw
EOF
  echo "itm-master:{PLAIN}master-secret" >"$dir/master-users"
}

# The extra configuration of UPSTREAM_FLAVOR=prod (printed), and its
# global ACL file.
prod_config() {
  local dir=$1 sep=$2
  # "owner" keeps the mailbox owner's full rights; the master user gets the
  # same on every mailbox of every user (providers' support logins).
  cat >"$dir/global-acl" <<EOF
* owner lrwstipekxa
* user=itm-master lrwstipekxa
EOF
  mkdir -p "$dir/shared"
  chown mail:mail "$dir/shared"
  cat <<EOF
# --- UPSTREAM_FLAVOR=prod ---
namespace inbox {
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
  mailbox Junk {
    special_use = \\Junk
    auto = subscribe
  }
  mailbox Archive {
    special_use = \\Archive
    auto = subscribe
  }
}
namespace shared {
  type = shared
  separator = $sep
  prefix = shared$sep%%u$sep
  location = maildir:$dir/mail/%%u
  subscriptions = no
  list = children
}
plugin {
  acl = vfile:$dir/global-acl
  acl_shared_dict = file:$dir/shared/shared-mailboxes.db
  quota = count:User quota
  quota_rule = *:storage=1G
  quota_vsizes = yes
}
EOF
}

wait_port() {
  local port=$1
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "dovecot did not start listening on port $port" >&2
  return 1
}

cmd=${1:-}
case "$cmd" in
  install)
    install_dovecot
    ;;
  start)
    dir=${2:?usage: upstream.sh start DIR PORT [SEPARATOR]}
    port=${3:?usage: upstream.sh start DIR PORT [SEPARATOR]}
    sep=${4:-/}
    case "$sep" in /|.) ;; *) echo "separator must be / or ." >&2; exit 2 ;; esac
    flavor=${UPSTREAM_FLAVOR:-default}
    case "$flavor" in default|prod|master-elsewhere) ;; *) echo "UPSTREAM_FLAVOR must be default, prod or master-elsewhere" >&2; exit 2 ;; esac
    install_dovecot
    mkdir -p "$dir/run" "$dir/state" "$dir/mail" "$dir/home"
    dir=$(cd "$dir" && pwd)
    # Dovecot's unprivileged processes must reach the config and mail.
    chmod 755 "$dir"
    chown mail:mail "$dir/mail" "$dir/home"
    write_config "$dir" "$port" "$sep" "$flavor"
    # Detached: Dovecot must not hold the caller's stdout open.
    dovecot -c "$dir/dovecot.conf" </dev/null >/dev/null 2>&1
    wait_port "$port"
    ;;
  stop)
    dir=${2:?usage: upstream.sh stop DIR}
    pidfile="$dir/run/master.pid"
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      # Dovecot's master takes ~2 s to wind down; nobody needs to wait for it.
      kill "$pid" 2>/dev/null || true
    fi
    ;;
  *)
    echo "usage: $0 start DIR PORT [SEPARATOR] | stop DIR | install" >&2
    exit 2
    ;;
esac
