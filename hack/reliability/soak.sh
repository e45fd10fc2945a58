#!/usr/bin/env bash
# hack/reliability/soak.sh: the load and soak scenario of the reliability suite.
#
# `claimguard serve` (pinned to one core) answers wrk (pinned to the other) for DURATION at
# CONNS connections with a mix of tokens: valid (distinct, RS256 and ES256), expired, wrongly
# signed, failing the required claim, and none. The wrk script (hack/reliability/soakmint)
# checks every answer's status and reason code. After a warm-up of the same load, the
# server's RSS (VmRSS), live heap (go_memstats_heap_inuse_bytes) and goroutines
# (go_goroutines, from /metrics: no pprof needed) are taken as the start; the same after the
# soak, once the load stopped, are the end.
#
# PASS when: no unexpected answer, no socket error or timeout, each kind answered about as
# often as sent, serve still running with nothing logged at error level but the denials,
# goroutines at the end within 5 of the start, RSS at the end within 25% + 16 MiB of the start,
# live heap within 50% + 8 MiB.
#
# Usage: hack/reliability/soak.sh   (DURATION=60s CONNS=128 WARMUP=10s by default)
# Output: the measurements and PASS or FAIL (exit 1) on stdout; logs and raw wrk output in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-60s}
CONNS=${CONNS:-128}
WARMUP=${WARMUP:-10s}
PORT=${PORT:-18090}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
OUT=${OUT:-$(mktemp -d /tmp/claimguard-soak.XXXXXX)}

for tool in wrk taskset curl ss; do
  command -v "$tool" >/dev/null || { echo "soak.sh: $tool is not installed (apt-get install wrk util-linux curl iproute2)" >&2; exit 1; }
done
if ss -ltn | awk '{print $4}' | grep -qE ":$PORT\$"; then
  echo "soak.sh: port $PORT is taken (a stale server would answer); set PORT" >&2
  exit 1
fi

echo "building into $OUT" >&2
go build -o "$OUT/claimguard" .
go build -o "$OUT/soakmint" ./hack/reliability/soakmint
"$OUT/soakmint" -out "$OUT" 2>"$OUT/soakmint.log"

taskset -c "$SERVER_CPU" "$OUT/claimguard" serve --policy-file "$OUT/policy.yaml" --listen "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true' EXIT
base=http://127.0.0.1:$PORT
for _ in $(seq 1 200); do
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$base/readyz" || true) == 200 ]] && break
  sleep 0.05
done
kill -0 "$pid" 2>/dev/null || { echo "soak.sh: serve exited, see $OUT/serve.log" >&2; exit 1; }
url=$base/authz/soak/api

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }   # KiB
gauge() { curl -s "$base/metrics" | awk -v n="$1" '$1 == n {printf "%.0f", $2}'; }
measure() { # NAME: sample after the load has stopped and connections closed
  sleep 5
  eval "$1_rss=$(rss) $1_goroutines=$(gauge go_goroutines) $1_heap=$(gauge go_memstats_heap_inuse_bytes)"
}

echo "warm-up: $WARMUP at $CONNS connections" >&2
taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" --timeout 2s -s "$OUT/mix.lua" "$url" >"$OUT/warmup.wrk"
measure start

echo "soak: $DURATION at $CONNS connections" >&2
: >"$OUT/rss.series"
taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --timeout 2s --latency -s "$OUT/mix.lua" "$url" >"$OUT/soak.wrk" &
wrk_pid=$!
while kill -0 "$wrk_pid" 2>/dev/null; do
  echo "$(date +%s) $(rss) $(gauge go_goroutines)" >>"$OUT/rss.series"
  sleep 10
done
wait "$wrk_pid"
measure end

fail=()
check=$(grep '^soak-check:' "$OUT/soak.wrk" || true)
[[ -n $check ]] || fail+=("the wrk script printed no totals")
val() { sed -E "s/.* $1=([0-9]+).*/\1/" <<<"$check"; }
answers=$(val answers) unexpected=$(val unexpected)
[[ ${unexpected:-1} == 0 ]] || fail+=("$unexpected unexpected answers: $(grep '^soak-unexpected:' "$OUT/soak.wrk" || true)")
if grep -q 'Socket errors' "$OUT/soak.wrk"; then fail+=("$(grep 'Socket errors' "$OUT/soak.wrk" | sed 's/^ *//')"); fi
# Each of the five kinds is a fifth of the answers, give or take the requests in flight at
# the end of the run (one per connection).
for k in valid expired forged noscope none; do
  n=$(val "$k")
  diff=$(( n * 5 - answers ))
  (( ${diff#-} <= 5 * (CONNS + 5) )) || fail+=("$k answered $n times of $answers: not a fifth, a kind was answered as another")
done
kill -0 "$pid" 2>/dev/null || fail+=("serve is not running")
if grep -v '"msg":"Request denied"' "$OUT/serve.log" | grep -qE '"level":"(error|dpanic|panic|fatal)"|^panic:'; then
  fail+=("serve logged errors: $(grep -v '"msg":"Request denied"' "$OUT/serve.log" | grep -E '"level":"error"|^panic' | head -1)")
fi
(( end_goroutines <= start_goroutines + 5 )) || fail+=("goroutines $start_goroutines -> $end_goroutines")
(( end_rss <= start_rss * 125 / 100 + 16384 )) || fail+=("RSS $((start_rss / 1024)) -> $((end_rss / 1024)) MiB")
(( end_heap <= start_heap * 3 / 2 + 8388608 )) || fail+=("live heap $((start_heap >> 20)) -> $((end_heap >> 20)) MiB")

rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/soak.wrk")
lat() { awk -v p="$1" '$1 == p {print $2}' "$OUT/soak.wrk"; }
echo
echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t1 -c$CONNS -d$DURATION --timeout 2s, serve on core $SERVER_CPU, wrk on core $WRK_CPU."
echo "answers: $answers ($rps/s), p50 $(lat 50%), p99 $(lat 99%), max $(awk '/^    Latency/ {print $4}' "$OUT/soak.wrk"); $check"
echo "start (after a $WARMUP warm-up, 5s idle): RSS $((start_rss / 1024)) MiB, live heap $((start_heap >> 20)) MiB, goroutines $start_goroutines"
echo "end (5s after the soak): RSS $((end_rss / 1024)) MiB, live heap $((end_heap >> 20)) MiB, goroutines $end_goroutines"
echo "RSS (MiB) and goroutines every 10s under load: $(awk '{printf "%d/%d ", $2/1024, $3}' "$OUT/rss.series")"
if ((${#fail[@]})); then
  printf 'FAIL: %s\n' "${fail[@]}"
  echo "logs and wrk output in $OUT"
  exit 1
fi
echo "PASS (logs and wrk output in $OUT)"
