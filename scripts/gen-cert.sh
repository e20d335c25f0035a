#!/usr/bin/env bash
# Regenerates the development certificates in certs/: a local CA and a
# certificate for localhost / 127.0.0.1 / ::1 signed by it. For demos and
# tests only; production uses the admin's real certificate.
#   scripts/gen-cert.sh [OUTDIR]
set -euo pipefail
out=${1:-"$(dirname "$0")/../certs"}
mkdir -p "$out"
cd "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
  -subj "/CN=imap-time-machine development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca-key.pem" -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout localhost-key.pem -out "$tmp/localhost.csr" 2>/dev/null
cat >"$tmp/ext.cnf" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in "$tmp/localhost.csr" -CA ca.pem -CAkey "$tmp/ca-key.pem" -CAcreateserial \
  -days 3650 -extfile "$tmp/ext.cnf" -out localhost.pem 2>/dev/null
rm -f ca.srl
echo "wrote $(pwd)/ca.pem, localhost.pem, localhost-key.pem"
