#!/usr/bin/env bash
# Flywheel load benchmark: how much does the gateway hop cost?
#
# One run does:
#   1. start nginx on loopback answering POST /v1/chat/completions with a fixed chat.completion
#      JSON (nginx.conf.template; `return 200 '<json>'`, default_type application/json),
#   2. start flywheel in front of it:
#        flywheel serve --listen 127.0.0.1:$FW_PORT --upstream-url http://127.0.0.1:$NGINX_PORT/v1 --db $WORK/bench.db
#   3. wrk (chat.lua: POST of a small chat body, --latency) for $DURATION at
#        1 connection  (-t1 -c1)   and   32 connections (-t2 -c32),
#      first straight to nginx, then through flywheel (each preceded by a short warm-up),
#   4. scrape /metrics, SIGTERM flywheel (must exit 0 after flushing its log),
#   5. report.py: table of requests/s and p50/p99 for both, added latency (flywheel - direct)
#      at p50/p99, requests/s ratio, and how many rows landed in the bench DB.
#
# Usage: scripts/bench/run.sh [--direct-only]
#   env: FLYWHEEL_BIN (default <repo>/.build/release/flywheel), DURATION (10s), WARMUP (2s),
#        NGINX_PORT (18080), FW_PORT (18081), NGINX_WORKERS (1), OUT (<repo>/bench-out/<timestamp>)
#        POLICY=1: run flywheel with a traffic policy on the benchmarked model (a 50/50 split per request
#        between two model names routed to the same nginx, with a fallback), to measure what a policy costs
#   --direct-only: only the nginx half (no flywheel binary needed) - validates the harness.
#
# nginx notes: runs with a private prefix under a temp dir (-p DIR -c DIR/nginx.conf), `daemon off`
# and backgrounded by this script, so it works as root without touching /etc/nginx or /var/lib/nginx.
# As root, the master drops workers to `nobody`; the temp dirs are made world-writable for that.
# worker_processes is 1 by default: the box has 2 cores shared by wrk + nginx + flywheel, so the
# numbers are relative (gateway vs. direct on the same machine), not absolute capacity.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIRECT_ONLY=0
[[ "${1:-}" == "--direct-only" ]] && DIRECT_ONLY=1

FLYWHEEL_BIN="${FLYWHEEL_BIN:-$REPO/.build/release/flywheel}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
NGINX_PORT="${NGINX_PORT:-18080}"
FW_PORT="${FW_PORT:-18081}"
NGINX_WORKERS="${NGINX_WORKERS:-1}"
OUT="${OUT:-$REPO/bench-out/$(date +%Y%m%d-%H%M%S)}"
CONCURRENCY=("1 1" "2 32")   # "threads connections"

if [[ $DIRECT_ONLY == 0 && ! -x "$FLYWHEEL_BIN" ]]; then
  echo "run.sh: flywheel binary not found at $FLYWHEEL_BIN" >&2
  echo "        build it with 'swift build -c release', set FLYWHEEL_BIN, or pass --direct-only" >&2
  exit 1
fi
for tool in nginx wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 1; }
done

WORK="$(mktemp -d /tmp/flywheel-bench.XXXXXX)"
mkdir -p "$OUT"
NGINX_PID=""
FW_PID=""
cleanup() {
  [[ -n "$FW_PID" ]] && kill "$FW_PID" 2>/dev/null && wait "$FW_PID" 2>/dev/null || true
  [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {  # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    (( SECONDS < deadline )) || return 1
    sleep 0.05
  done
}

# --- 1. nginx -------------------------------------------------------------------------------------
BODY='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, benchmark! This is a fixed answer from nginx.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":12,"total_tokens":30}}'
NGX="$WORK/nginx"
mkdir -p "$NGX/tmp" "$NGX/logs"
chmod 0777 "$NGX/tmp"
sed -e "s|@PREFIX@|$NGX|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@WORKERS@|$NGINX_WORKERS|g" \
    -e "s|@BODY@|$BODY|g" "$HERE/nginx.conf.template" > "$NGX/nginx.conf"
nginx -t -q -p "$NGX" -c "$NGX/nginx.conf"
nginx -p "$NGX" -c "$NGX/nginx.conf" &
NGINX_PID=$!
wait_port 127.0.0.1 "$NGINX_PORT" 10 || { echo "nginx did not come up"; cat "$NGX/error.log"; exit 1; }
DIRECT_URL="http://127.0.0.1:$NGINX_PORT/v1/chat/completions"
curl -fsS -X POST -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[]}' "$DIRECT_URL" \
  | python3 -c 'import json,sys; assert json.load(sys.stdin)["object"]=="chat.completion"' \
  || { echo "nginx answer check failed"; exit 1; }
echo "nginx (workers=$NGINX_WORKERS) on 127.0.0.1:$NGINX_PORT"

# --- 2. flywheel ----------------------------------------------------------------------------------
SMOKE=0
FW_CONFIG=()
if [[ "${POLICY:-0}" == 1 ]]; then
  cat > "$WORK/policy.yaml" <<'YAML'
policies:
  - model: gpt-4o-mini
    variants: [{target: gpt-4o-mini-bench, weight: 50}, {target: gpt-4o-mini, weight: 50}]
    sticky: none
    fallback: [gpt-4o-mini]
YAML
  FW_CONFIG=(--config "$WORK/policy.yaml")
fi
if [[ $DIRECT_ONLY == 0 ]]; then
  OPENAI_API_KEY=sk-bench-upstream "$FLYWHEEL_BIN" serve "${FW_CONFIG[@]}" --listen "127.0.0.1:$FW_PORT" \
      --upstream-url "http://127.0.0.1:$NGINX_PORT/v1" --db "$WORK/bench.db" \
      >"$OUT/flywheel.stdout" 2>"$OUT/flywheel.stderr" &
  FW_PID=$!
  deadline=$((SECONDS + 20))
  until grep -q "listening on http://127.0.0.1:" "$OUT/flywheel.stderr" 2>/dev/null; do
    kill -0 "$FW_PID" 2>/dev/null || { echo "flywheel exited early:"; cat "$OUT/flywheel.stderr"; FW_PID=""; exit 1; }
    (( SECONDS < deadline )) || { echo "flywheel did not start within 20 s"; cat "$OUT/flywheel.stderr"; exit 1; }
    sleep 0.05
  done
  FW_URL="http://127.0.0.1:$FW_PORT/v1/chat/completions"
  curl -fsS -X POST -H 'content-type: application/json' -H 'authorization: Bearer sk-bench-client' \
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"smoke"}]}' "$FW_URL" \
    | python3 -c 'import json,sys; assert json.load(sys.stdin)["object"]=="chat.completion"' \
    || { echo "flywheel answer check failed"; cat "$OUT/flywheel.stderr"; exit 1; }
  SMOKE=1
  echo "flywheel ($FLYWHEEL_BIN) on 127.0.0.1:$FW_PORT -> nginx"
fi

# --- 3. wrk ---------------------------------------------------------------------------------------
run_wrk() {  # target url
  local target=$1 url=$2
  echo "warm-up $target ($WARMUP)"
  wrk -t2 -c32 -d"$WARMUP" --latency -s "$HERE/chat.lua" "$url" > "$OUT/warmup-$target.txt"
  for tc in "${CONCURRENCY[@]}"; do
    set -- $tc
    echo "wrk $target -t$1 -c$2 -d$DURATION"
    wrk -t"$1" -c"$2" -d"$DURATION" --latency -s "$HERE/chat.lua" "$url" > "$OUT/wrk-$target-c$2.txt"
  done
}
anon_rss_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
run_wrk direct "$DIRECT_URL"
if [[ $DIRECT_ONLY == 0 ]]; then
  RSS_BEFORE=$(anon_rss_kb "$FW_PID")
  run_wrk flywheel "$FW_URL"
  RSS_LOADED=$(anon_rss_kb "$FW_PID")
  # Then let the log writer drain its queue (rows waiting are memory too) before reading memory again.
  for _ in $(seq 1 600); do
    depth=$(curl -fsS "http://127.0.0.1:$FW_PORT/metrics" | awk '/^flywheel_log_queue_depth / {print $2}')
    [[ "${depth%.*}" == "0" ]] && break
    sleep 0.1
  done
  RSS_AFTER=$(anon_rss_kb "$FW_PID")
  # Once the load stops, memory must be back to its working size; the log's page cache (log.cache_mb,
  # 32 MiB by default) is the one part that grows with the log.
  echo "flywheel anonymous RSS: ${RSS_BEFORE} KB before the load, ${RSS_LOADED} KB at its end, ${RSS_AFTER} KB once the log queue drained" | tee "$OUT/rss.txt"
fi

# --- 4. shutdown flywheel -------------------------------------------------------------------------
REPORT_ARGS=()
if [[ $DIRECT_ONLY == 0 ]]; then
  curl -fsS "http://127.0.0.1:$FW_PORT/metrics" > "$OUT/metrics.txt" || echo "(metrics scrape failed)"
  kill -TERM "$FW_PID"
  rc=0; wait "$FW_PID" || rc=$?
  FW_PID=""
  echo "flywheel exited with $rc after SIGTERM"
  [[ $rc == 0 ]] || echo "WARNING: expected exit code 0"
  cp "$WORK/bench.db" "$OUT/bench.db" 2>/dev/null || true
  REPORT_ARGS=(--db "$OUT/bench.db" --extra-requests "$SMOKE" --metrics "$OUT/metrics.txt")
fi

# --- 5. report ------------------------------------------------------------------------------------
echo
echo "results in $OUT (duration $DURATION per run)"
python3 "$HERE/report.py" "$OUT" "${REPORT_ARGS[@]}"
