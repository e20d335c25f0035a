#!/usr/bin/env bash
# The cluster store's engines on loopback, for the tests and the benches:
# one PostgreSQL 15 (Debian) and a three-node Garage (S3-compatible object
# store, replication factor 3), everything under DIR.
#
#   scripts/cluster.sh start DIR [WATCH_PID]  # prints nothing; writes DIR/cluster.env
#   scripts/cluster.sh stop DIR
#   scripts/cluster.sh install                # PostgreSQL and Garage, cached
#   scripts/cluster.sh garage DIR N ARGS...   # the garage CLI against node N (1-3)
#   scripts/cluster.sh pg-node DIR stop|start # PostgreSQL alone
#   scripts/cluster.sh garage-node DIR N stop|start # one Garage node (1-3), killed or back
#
# DIR/cluster.env (shell syntax) tells how to reach them:
#   PG_URL        libpq connection string (user itm, trust auth on loopback)
#   PG_TLS_URL    the same as user itm_tls, which may connect over TLS only
#                 (sslmode=require); PG_CA signs the server's certificate
#   PG_PORT, PG_SOCKET_DIR
#   S3_ENDPOINT   node 1's S3 API; S3_ENDPOINTS all three, space-separated
#   S3_REGION, S3_BUCKET, S3_KEY_ID, S3_SECRET
# With WATCH_PID, a watcher stops everything once that process is gone (a
# test run that dies leaves nothing running).
#
# PostgreSQL runs as the unprivileged user `postgres` with fsync off (tests
# measure behaviour, not the disk). Garage: crates.io `garage` 2.5.0, built
# once by `cargo install` into GARAGE_CACHE (default
# /var/cache/imap-time-machine/garage; about 6 minutes on 2 cores).
set -euo pipefail

GARAGE_VERSION=2.5.0
GARAGE_CACHE=${GARAGE_CACHE:-/var/cache/imap-time-machine/garage}
GARAGE=$GARAGE_CACHE/bin/garage
PG_BIN=/usr/lib/postgresql/15/bin
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$(command -v /usr/bin/python3 || command -v python3)

install() {
  local need=()
  [ -x "$PG_BIN/initdb" ] || need+=(postgresql-15)
  # curl signs the S3 request that tells a restarted node is back.
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
      apt-get update -qq >/dev/null
      apt-get install -y -qq "${need[@]}" >/dev/null
    }
  fi
  if [ ! -x "$GARAGE" ] || ! "$GARAGE" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    echo "building garage $GARAGE_VERSION (cargo install, cached in $GARAGE_CACHE) ..." >&2
    mkdir -p "$GARAGE_CACHE"
    # Its own target dir: never the project's (no lock contention, no mix).
    env -u CARGO_TARGET_DIR cargo install garage --locked --version "$GARAGE_VERSION" \
      --root "$GARAGE_CACHE" --target-dir "$GARAGE_CACHE/build" >"$GARAGE_CACHE/build.log" 2>&1 || {
      tail -30 "$GARAGE_CACHE/build.log" >&2
      exit 1
    }
    rm -rf "$GARAGE_CACHE/build"
  fi
}

free_ports() { # N
  "$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_port() { # PORT SECONDS WHAT
  local end=$((SECONDS + $2))
  until "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1',int(sys.argv[1])),0.2)" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $end ]; then
      echo "cluster.sh: $3 did not listen on port $1 within $2 s" >&2
      return 1
    fi
    sleep 0.1
  done
}

g() { # N ARGS...: the garage CLI against node N
  local n=$1
  shift
  "$GARAGE" -c "$DIR/garage/n$n.toml" "$@"
}

start_pg() {
  local port=$1
  # TLS with the repo's test certificate (certs/, signed by certs/ca.pem).
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/log" -w -t 60 \
    -o "-p $port -k $DIR/pg -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=400 -c ssl=on -c ssl_cert_file=$DIR/pg/server.pem -c ssl_key_file=$DIR/pg/server-key.pem" \
    start >/dev/null
}

start_garage() { # N: node N of DIR, from its config file
  local n=$1
  RUST_LOG=${GARAGE_LOG:-warn} setsid "$GARAGE" -c "$DIR/garage/n$n.toml" server >>"$DIR/garage/n$n.log" 2>&1 &
  echo $! >"$DIR/garage/n$n.pid"
}

# The port of KEY (rpc_bind_addr or api_bind_addr) in node N's config.
node_port() { # N KEY
  sed -n "s/^$2 = \"127.0.0.1:\([0-9]*\)\"/\1/p" "$DIR/garage/n$1.toml"
}

start() {
  install
  mkdir -p "$DIR/pg" "$DIR/garage"
  chmod 755 "$DIR"
  read -r PG_PORT RPC1 RPC2 RPC3 S31 S32 S33 <<<"$(free_ports 7)"
  # PostgreSQL: a fresh cluster owned by postgres, superuser `itm`.
  chown postgres "$DIR/pg"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$DIR/pg/data" -U itm --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/pg/initdb.log" 2>&1 || {
    cat "$DIR/pg/initdb.log" >&2
    exit 1
  }
  command install -o postgres -m 600 "$ROOT/certs/localhost.pem" "$DIR/pg/server.pem"
  command install -o postgres -m 600 "$ROOT/certs/localhost-key.pem" "$DIR/pg/server-key.pem"
  # Role itm_tls may connect over TLS only: what the TLS tests log in as.
  local hba="$DIR/pg/data/pg_hba.conf"
  printf 'hostnossl all itm_tls 127.0.0.1/32 reject\nhostssl all itm_tls 127.0.0.1/32 trust\n' | cat - "$hba" >"$hba.new"
  mv "$hba.new" "$hba"
  chown postgres "$hba"
  start_pg "$PG_PORT"
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U itm -d postgres -c "CREATE ROLE itm_tls SUPERUSER LOGIN" >/dev/null
  # Garage: three nodes, one zone, replication factor 3.
  local secret
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  local rpc=("$RPC1" "$RPC2" "$RPC3") s3=("$S31" "$S32" "$S33")
  for i in 1 2 3; do
    mkdir -p "$DIR/garage/n$i/meta" "$DIR/garage/n$i/data"
    cat >"$DIR/garage/n$i.toml" <<EOF
metadata_dir = "$DIR/garage/n$i/meta"
data_dir = "$DIR/garage/n$i/data"
db_engine = "${GARAGE_DB_ENGINE:-lmdb}"
metadata_fsync = false
data_fsync = false
replication_factor = 3
rpc_bind_addr = "127.0.0.1:${rpc[$((i - 1))]}"
rpc_public_addr = "127.0.0.1:${rpc[$((i - 1))]}"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:${s3[$((i - 1))]}"
root_domain = ".s3.garage.localhost"
EOF
    start_garage "$i"
  done
  for i in 1 2 3; do wait_port "${rpc[$((i - 1))]}" 30 "garage node $i (rpc)"; done
  local ids=()
  for i in 1 2 3; do ids+=("$(g "$i" node id -q 2>/dev/null | tail -1)"); done
  g 1 node connect "${ids[1]}" >/dev/null
  g 1 node connect "${ids[2]}" >/dev/null
  for id in "${ids[@]}"; do g 1 layout assign -z dc1 -c 1G "${id%@*}" >/dev/null; done
  g 1 layout apply --version 1 >/dev/null
  g 1 bucket create itm >/dev/null
  local key
  key=$(g 1 key create itm-key)
  local key_id secret_key
  key_id=$(sed -n 's/^Key ID: *//p' <<<"$key" | head -1)
  secret_key=$(sed -n 's/^Secret key: *//p' <<<"$key" | head -1)
  if [ -z "$key_id" ] || [ -z "$secret_key" ]; then
    echo "cluster.sh: could not read the key garage made:" >&2
    echo "$key" >&2
    exit 1
  fi
  g 1 bucket allow --read --write --owner itm --key itm-key >/dev/null
  for i in 1 2 3; do wait_port "${s3[$((i - 1))]}" 30 "garage node $i (S3)"; done
  cat >"$DIR/cluster.env" <<EOF
PG_PORT=$PG_PORT
PG_SOCKET_DIR=$DIR/pg
PG_URL="host=127.0.0.1 port=$PG_PORT user=itm dbname=postgres"
PG_TLS_URL="host=127.0.0.1 port=$PG_PORT user=itm_tls dbname=postgres sslmode=require"
PG_CA=$ROOT/certs/ca.pem
S3_ENDPOINT=http://127.0.0.1:$S31
S3_ENDPOINTS="http://127.0.0.1:$S31 http://127.0.0.1:$S32 http://127.0.0.1:$S33"
S3_REGION=garage
S3_BUCKET=itm
S3_KEY_ID=$key_id
S3_SECRET=$secret_key
EOF
  if [ -n "${WATCH:-}" ]; then
    # Stops the cluster when the process that asked for it is gone.
    setsid bash -c "while kill -0 $WATCH 2>/dev/null; do sleep 1; done; exec '$0' stop '$DIR'" >/dev/null 2>&1 </dev/null &
  fi
}

stop() {
  for i in 1 2 3; do
    if [ -f "$DIR/garage/n$i.pid" ]; then
      kill "$(cat "$DIR/garage/n$i.pid")" 2>/dev/null || true
    fi
  done
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
}

cmd=${1:-}
case "$cmd" in
  install) install ;;
  start)
    DIR=$(realpath "${2:?DIR}")
    WATCH=${3:-}
    mkdir -p "$DIR"
    start
    ;;
  stop)
    DIR=$(realpath "${2:?DIR}")
    stop
    ;;
  garage)
    DIR=$(realpath "${2:?DIR}")
    n=${3:?N}
    shift 3
    g "$n" "$@"
    ;;
  pg-node)
    DIR=$(realpath "${2:?DIR}")
    # shellcheck disable=SC1091
    . "$DIR/cluster.env"
    case "${3:?stop|start}" in
      stop) runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -m fast stop >/dev/null ;;
      start) start_pg "$PG_PORT" ;;
    esac
    ;;
  garage-node)
    DIR=$(realpath "${2:?DIR}")
    n=${3:?N}
    case "${4:?stop|start}" in
      stop)
        pid=$(cat "$DIR/garage/n$n.pid")
        # As a crash: a graceful stop takes Garage about 12 s.
        kill -KILL "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        ;;
      start)
        start_garage "$n"
        wait_port "$(node_port "$n" rpc_bind_addr)" 30 "garage node $n (rpc)"
        wait_port "$(node_port "$n" api_bind_addr)" 30 "garage node $n (S3)"
        # Listening is not enough: until it has reconnected to the other
        # nodes it cannot reach a quorum. Connect it to those that run (it
        # would find them by itself, in tens of seconds); ready once it
        # has answered five LISTs in a row (its peers may drop and redo
        # their connections to it at first).
        for m in 1 2 3; do
          [ "$m" = "$n" ] && continue
          if id=$(g "$m" node id -q 2>/dev/null | tail -1) && [ -n "$id" ]; then
            g "$n" node connect "$id" >/dev/null 2>&1 || true
          fi
        done
        # shellcheck disable=SC1091
        . "$DIR/cluster.env"
        end=$((SECONDS + 60))
        ok=0
        while [ $ok -lt 5 ]; do
          if [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
            --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_KEY_ID:$S3_SECRET" \
            "http://127.0.0.1:$(node_port "$n" api_bind_addr)/$S3_BUCKET?list-type=2&max-keys=1")" = 200 ]; then
            ok=$((ok + 1))
          else
            ok=0
          fi
          if [ $SECONDS -ge $end ]; then
            echo "cluster.sh: garage node $n did not rejoin the cluster within 60 s" >&2
            exit 1
          fi
          sleep 0.2
        done
        ;;
    esac
    ;;
  *)
    echo "usage: $0 install | start DIR [WATCH_PID] | stop DIR | garage DIR N ARGS... | pg-node DIR stop|start | garage-node DIR N stop|start" >&2
    exit 2
    ;;
esac
