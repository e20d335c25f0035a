#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine:
# libclang-dev (bindgen for RocksDB), Dovecot (the test upstream), python3
# (the fixture loader). Extra package names may be given (e.g. isync).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
  }
fi
scripts/upstream.sh install
