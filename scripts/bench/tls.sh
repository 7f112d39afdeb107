#!/usr/bin/env bash
# The TLS listener against plain HTTP, same daemon, same machine: requests/s over keep-alive connections, and new
# connections/s (`Connection: close`: one TCP connection, and over TLS one full handshake, per request). GET /healthz,
# so no upstream is involved and the transport's cost shows alone. The load generator is wrk (HTTPS through its
# OpenSSL). Also prints the daemon's RSS after a warm-up and after the whole run: connections must leave nothing
# behind.
#
#   swift build -c release --product flywheel
#   DURATION=10s CONNECTIONS=16 scripts/bench/tls.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${FLYWHEEL_BIN:-.build/release/flywheel}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
KEY=${KEY:-ec}   # ec (P-256) or rsa (2048 bits)
work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$KEY" = rsa ]; then newkey=(-newkey rsa:2048); else newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1); fi
openssl req -x509 "${newkey[@]}" -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/tls.yaml" <<EOF
server:
  tls:
    cert_file: $work/cert.pem
    key_file: $work/key.pem
EOF

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# The daemon's CPU time so far (user + system), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

start() {  # $1: http or https
    local args=(serve --listen 127.0.0.1:0 --db "$work/bench.db" --upstream-url http://127.0.0.1:9/v1)
    [ "$1" = https ] && args+=(--config "$work/tls.yaml")
    "$BIN" "${args[@]}" 2> "$work/$1.stderr" &
    pid=$!
    for _ in $(seq 100); do
        port=$(grep -oE 'listening on https?://127\.0\.0\.1:[0-9]+' "$work/$1.stderr" | grep -oE '[0-9]+$' || true)
        [ -n "$port" ] && return
        sleep 0.1
    done
    echo "the daemon did not start:" >&2; cat "$work/$1.stderr" >&2; exit 1
}

rate() {  # url [extra wrk args...]: requests/s, the daemon's CPU µs per request, and errors if any
    local out before after
    before=$(cpu_ticks)
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$@")
    after=$(cpu_ticks)
    local rps count errors
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    count=$(echo "$out" | awk '/requests in/ {print $1}')
    errors=$(echo "$out" | awk '/Socket errors/ {print $0}')
    echo "$rps/s, daemon CPU $(( (after - before) * 1000000 / $(getconf CLK_TCK) / count )) µs each${errors:+ ($errors)}"
}

for scheme in http https; do
    start "$scheme"
    url="$scheme://127.0.0.1:$port/healthz"
    wrk -t1 -c"$CONNECTIONS" -d2s "$url" > /dev/null
    wrk -t1 -c"$CONNECTIONS" -d2s -H "Connection: close" "$url" > /dev/null
    warm=$(rss_kib)
    keep=$(rate "$url")
    fresh=$(rate "$url" -H "Connection: close")
    fresh2=$(rate "$url" -H "Connection: close")
    echo "$scheme: keep-alive requests ${keep}; new connections ${fresh}, again ${fresh2}; RSS after warm-up ${warm} KiB, after all $(rss_kib) KiB"
    if [ "$scheme" = https ]; then
        # Memory over many more handshakes: RSS after each further round of new connections.
        line="https: RSS (KiB) after each further ${DURATION} of new connections:"
        for _ in $(seq "${ROUNDS:-5}"); do
            wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -H "Connection: close" "$url" > "$work/wrk.out"
            line+=" $(rss_kib) ($(awk '/requests in/ {print $1}' "$work/wrk.out") connections)"
        done
        echo "$line"
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
done
