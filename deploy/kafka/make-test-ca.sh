#!/usr/bin/env bash
# Make a private test CA and a server certificate signed by it, for the local broker's
# SASL_SSL listener and for the https fakes of the TLS tests. Never use these in
# production: the CA key sits unencrypted next to the certificates.
#
#   bash deploy/kafka/make-test-ca.sh DIR [COMMON_NAME]
#
# Writes into DIR (created 0700; every file 0600):
#   ca.pem, ca.key            the CA (clients trust ca.pem: ssl.ca.location, CURLOPT_CAINFO)
#   server.pem, server.key    server certificate + key (PEM), SAN IP:127.0.0.1, DNS:localhost
#   server.p12                server key + certificate + CA chain as PKCS12 (Kafka keystore)
#   server.p12.password       the keystore password (random)
# Idempotent: an existing, complete, still-valid set is kept (exit 0, "kept").
#
# Environment: CLOSEDLOOP_TEST_CA_DAYS validity in days (default 30).
set -euo pipefail

say() { printf 'make-test-ca: %s\n' "$*"; }
die() { printf 'make-test-ca: error: %s\n' "$*" >&2; exit 1; }

case ${1:-} in
    ""|-h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; [[ -n ${1:-} ]] && exit 0; exit 2 ;;
esac
dir=$1
cn=${2:-closedloop-test-server}
days=${CLOSEDLOOP_TEST_CA_DAYS:-30}
[[ $days =~ ^[0-9]{1,4}$ ]] && ((days >= 1)) || die "CLOSEDLOOP_TEST_CA_DAYS='$days' is not a number of days (1..9999)"
[[ $cn =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "common name '$cn' must be 1..64 of [A-Za-z0-9._-]"
command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
command -v keytool >/dev/null || die "keytool is needed (Java 17: apt-get install openjdk-17-jre-headless)"

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

files=(ca.pem ca.key server.pem server.key server.p12 server.p12.password)
complete=1
for f in "${files[@]}"; do [[ -s $dir/$f ]] || complete=0; done
# Kept only if the server certificate verifies against the CA and lives at least a day.
if ((complete)) && openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1 \
    && openssl x509 -in "$dir/server.pem" -noout -checkend 86400 >/dev/null 2>&1; then
    say "kept the test CA in $dir"
    exit 0
fi

tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/O=closedloop test/CN=closedloop test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.pem" >"$tmp/openssl.log" 2>&1 \
    || { cat "$tmp/openssl.log" >&2; die "could not create the CA"; }

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=closedloop test/CN=$cn" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" >"$tmp/openssl.log" 2>&1 \
    || { cat "$tmp/openssl.log" >&2; die "could not create the server key"; }

# Clients verify the host name (librdkafka's ssl.endpoint.identification.algorithm=https,
# curl's VERIFYHOST): the SAN must carry the loopback address the tests connect to.
cat >"$tmp/server.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
openssl x509 -req -sha256 -days "$days" -in "$tmp/server.csr" -CA "$tmp/ca.pem" \
    -CAkey "$tmp/ca.key" -CAcreateserial -extfile "$tmp/server.ext" -out "$tmp/server.pem" \
    >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; die "could not sign the server certificate"; }

openssl rand -hex 24 >"$tmp/server.p12.password"
# The password goes through a file descriptor, never argv (visible in ps).
openssl pkcs12 -export -name server -inkey "$tmp/server.key" -in "$tmp/server.pem" \
    -certfile "$tmp/ca.pem" -out "$tmp/server.p12" -passout "file:$tmp/server.p12.password" \
    >"$tmp/openssl.log" 2>&1 || { cat "$tmp/openssl.log" >&2; die "could not write the PKCS12 keystore"; }

# Java must be able to read what it will be given (OpenSSL 3's PKCS12 uses AES/PBKDF2,
# which Java reads from 17 on; an older JRE fails here, not at broker start).
keytool -list -storetype PKCS12 -keystore "$tmp/server.p12" \
    -storepass:file "$tmp/server.p12.password" >"$tmp/keytool.log" 2>&1 \
    || { cat "$tmp/keytool.log" >&2; die "keytool cannot read the PKCS12 keystore"; }
grep -q PrivateKeyEntry "$tmp/keytool.log" || die "the keystore holds no private key entry"
openssl verify -CAfile "$tmp/ca.pem" "$tmp/server.pem" >/dev/null \
    || die "the server certificate does not verify against the new CA"

for f in "${files[@]}"; do
    chmod 600 "$tmp/$f"
    mv -f "$tmp/$f" "$dir/$f"
done
say "made a test CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) in $dir"
