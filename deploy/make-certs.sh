#!/usr/bin/env bash
# Makes a throwaway PKI for trying TLS out: a CA, the daemon's certificate (for 127.0.0.1 and
# localhost) and a client certificate whose identity is "demo-ground-station", each valid for a
# day, with P-256 keys, in DIR (which must exist). Used by `DEMO_TLS=1 deploy/demo.sh` and
# `bench/tls.sh`; not for production, where the certificates come from your own CA.
#
# Usage: deploy/make-certs.sh DIR      writes DIR/{ca,server,client}.{pem,key}
set -euo pipefail

dir="${1:?usage: make-certs.sh DIR}"
command -v openssl >/dev/null || { echo "make-certs.sh: needs openssl" >&2; exit 1; }
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 1 \
    -subj "/CN=demo CA" 2>/dev/null
issue() { # NAME SUBJECT EXTENSIONS
    openssl req "${ec[@]}" -keyout "$dir/$1.key" -out "$dir/$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 1 -out "$dir/$1.pem" -extfile <(printf '%b' "$3") 2>/dev/null
    rm -f "$dir/$1.csr"
}
issue server "/CN=localhost" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth"
issue client "/CN=demo-ground-station" \
    "subjectAltName=DNS:demo-ground-station\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth"
