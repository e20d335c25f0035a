#!/usr/bin/env bash
# The Debian package, built with cargo-deb from [package.metadata.deb] in
# Cargo.toml (packaging/deb/cargo-metadata.toml) and packaging/deb/.
#
#   scripts/deb.sh                           cargo build --release --locked, then package
#   scripts/deb.sh --no-build                package the release binary already built
#   scripts/deb.sh --no-build --profile dev  package CARGO_TARGET_DIR/debug/imap-time-machine
#                                            (what the tests built; no second build)
# Options:
#   --output PATH   a directory or a file name for the .deb (default:
#                   $CARGO_TARGET_DIR/debian/)
#   --dbgsym        keep the debug symbols, in a separate -dbgsym.ddeb next to
#                   the .deb (default: strip them; [profile.release] has
#                   debug = 1, which cargo-deb would otherwise ship: a 500 MB binary)
#   -- ARGS         passed to cargo-deb as they are
#
# CARGO_TARGET_DIR defaults to the dirs the other scripts use:
# /var/cache/imap-time-machine/target-release (release),
# /var/cache/imap-time-machine/target (--profile dev).
# The last line of stdout is the path of the .deb.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
die() { echo "deb.sh: $*" >&2; exit 1; }

no_build=0 profile=release output="" debug_args=(--strip) extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) no_build=1 ;;
    --profile) profile=${2:?--profile needs a value}; shift ;;
    --profile=*) profile=${1#*=} ;;
    --output|-o) output=${2:?--output needs a value}; shift ;;
    --output=*) output=${1#*=} ;;
    --dbgsym) debug_args=(--dbgsym) ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

case "$profile" in
  dev|debug) profile=dev; profile_dir=debug
    default_target=/var/cache/imap-time-machine/target ;;
  *) profile_dir=$profile
    default_target=/var/cache/imap-time-machine/target-release ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$default_target}

grep -q '^\[package\.metadata\.deb\]' Cargo.toml ||
  die "Cargo.toml has no [package.metadata.deb]; paste packaging/deb/cargo-metadata.toml into it"

if ! cargo deb --version >/dev/null 2>&1; then
  echo "deb.sh: installing cargo-deb $CARGO_DEB_VERSION (about 2 minutes) ..." >&2
  # Its own temporary build dir, not the project's target dir.
  env -u CARGO_TARGET_DIR cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
have=$(cargo deb --version | awk '{print $2}')
[ "$have" = "$CARGO_DEB_VERSION" ] ||
  echo "deb.sh: warning: cargo-deb $have installed, this script was written for $CARGO_DEB_VERSION" >&2

args=(deb --locked "${debug_args[@]}")
[ "$profile" = release ] || args+=(--profile "$profile")
if [ "$no_build" = 1 ]; then
  bin=$CARGO_TARGET_DIR/$profile_dir/imap-time-machine
  [ -x "$bin" ] || die "--no-build: no binary at $bin (build it first, or set CARGO_TARGET_DIR)"
  args+=(--no-build)
fi
[ -n "$output" ] && args+=(--output "$output")
args+=("${extra[@]}")

echo "deb.sh: CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo ${args[*]}" >&2
# cargo-deb prints the path of each package it wrote on stdout (.deb, then
# the .ddeb with --dbgsym); its progress and warnings go to stderr.
out=$(cargo "${args[@]}")
printf '%s\n' "$out" | grep -v '\.deb$' || true
deb=$(printf '%s\n' "$out" | grep '\.deb$' | tail -n1 || true)
if [ -z "$deb" ] || [ ! -f "$deb" ]; then
  die "cargo deb wrote no .deb (its output: $out)"
fi
printf '%s\n' "$deb"
