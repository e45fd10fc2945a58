#!/usr/bin/env bash
# hack/bench/run.sh: the forward-auth benchmark, in one go, on loopback.
#
# For the same duration and concurrency, wrk drives:
#   floor        a Go server that always answers 200 (the HTTP floor)
#   floor-verify the same server doing the bare signature check of each
#                distinct token and nothing else: the limit, measured
#   claimguard   `claimguard serve`, RS256 and ES256, a few repeated tokens
#                (the verified-token cache answers) and many distinct tokens
#                (every request a cache miss and a signature check: the cache
#                is made smaller than the token cycle and the hit ratio is
#                reported)
#   oauth2-proxy v7.15.6 /oauth2/auth with --skip-jwt-bearer-tokens against a
#                local OIDC issuer, on the same tokens
# and `go test -bench` gives the bare signature check of each algorithm. The
# server under test is pinned to one core and wrk to the other.
#
# The scenarios run ROUNDS times, interleaved (floor, claimguard, oauth2-proxy,
# then again), and the table holds the median of each: the machine is shared,
# and interleaving spreads a disturbance over every scenario instead of one.
#
# Usage: hack/bench/run.sh     (DURATION=10s CONNS=32 MANY=20000 ROUNDS=3 by default)
# Output: a Markdown table on stdout, logs and raw wrk output in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
FEW=${FEW:-10}
MANY=${MANY:-20000}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
OAUTH2_PROXY_VERSION=v7.15.6
OUT=${OUT:-$(mktemp -d /tmp/claimguard-bench.XXXXXX)}

for tool in wrk taskset curl ss; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed (apt-get install wrk util-linux curl iproute2)" >&2; exit 1; }
done

# Build everything first, so no compile competes with a measurement.
echo "building into $OUT" >&2
go build -o "$OUT/claimguard" .
go build -o "$OUT/floor" ./hack/bench/floor
go build -o "$OUT/oidc" ./hack/bench/oidc
go build -o "$OUT/mint" ./hack/bench/mint
o2p="$root/bin/oauth2-proxy-$OAUTH2_PROXY_VERSION"
if [[ ! -x $o2p ]]; then
  echo "installing oauth2-proxy $OAUTH2_PROXY_VERSION into bin/" >&2
  tmp=$(mktemp -d)
  GOBIN=$tmp GOFLAGS=-mod=mod go install "github.com/oauth2-proxy/oauth2-proxy/v7@$OAUTH2_PROXY_VERSION"
  mkdir -p "$root/bin"
  mv "$tmp/oauth2-proxy" "$o2p"
  rm -rf "$tmp"
fi

issuer=http://127.0.0.1:18001
"$OUT/mint" -issuer "$issuer" -out "$OUT" -few "$FEW" -many "$MANY" 2>"$OUT/mint.log"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# start NAME CMD...: runs CMD pinned to the server core, logs to $OUT/NAME.log.
start() {
  local name=$1; shift
  # A stale process on a port would answer in place of the new server.
  if ss -ltn | awk '{print $4}' | grep -qE ':(18000|18002|18080)$'; then
    echo "run.sh: a benchmark port (18000, 18002, 18080) is in use:" >&2
    ss -ltnp | grep -E ':(18000|18002|18080) ' >&2
    exit 1
  fi
  taskset -c "$SERVER_CPU" "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  server_pid=$!
}
stop() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
wait_http() { # URL [expected status]: also checks that the server just
  # started is the one answering (a stale process on the port would not be).
  for _ in $(seq 1 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    if [[ $code == "${2:-200}" ]]; then
      kill -0 "$server_pid" 2>/dev/null || { echo "run.sh: the server exited; is the port taken? see $OUT" >&2; exit 1; }
      return 0
    fi
    sleep 0.05
  done
  echo "run.sh: $1 did not answer ${2:-200}" >&2
  exit 1
}

: >"$OUT/results.txt"
# usec VALUE: a wrk latency (123.00us, 2.62ms, 1.01s) in microseconds.
usec() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /[0-9]s$/) n *= 1000000; printf "%.0f", n }'; }
# measure NAME URL [LUA]: a 1s warm-up, then the measured run; records
# requests/s, p50 and p99 latency (µs) and the count of non-2xx answers.
measure() {
  local name=$1 url=$2 lua=${3:-}
  local args=(-t1 -c"$CONNS" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  taskset -c "$WRK_CPU" wrk "${args[@]}" -d1s "$url" >/dev/null
  taskset -c "$WRK_CPU" wrk "${args[@]}" -d"$DURATION" "$url" >"$OUT/$name.$round.wrk"
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$name.$round.wrk")
  p50=$(usec "$(awk '$1 == "50%" {print $2}' "$OUT/$name.$round.wrk")")
  p99=$(usec "$(awk '$1 == "99%" {print $2}' "$OUT/$name.$round.wrk")")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$OUT/$name.$round.wrk")
  echo "$name $rps $p50 $p99 ${bad:-0}" >>"$OUT/results.txt"
  echo "round $round $name: $rps req/s, p50 ${p50}us, p99 ${p99}us, non-2xx ${bad:-0}" >&2
}
cache_ratio() { # prints hits/(hits+misses) from claimguard's /metrics
  curl -s http://127.0.0.1:18080/metrics | awk '/^claimguard_cache_hits_total/ {h=$2} /^claimguard_cache_misses_total/ {m=$2} END {if (h+m > 0) printf "%.3f", h/(h+m); else print "n/a"}'
}

# The OIDC stand-in serves oauth2-proxy's discovery and keys in every round.
taskset -c "$WRK_CPU" "$OUT/oidc" -listen 127.0.0.1:18001 -issuer "$issuer" -jwks "$OUT/jwks.json" >"$OUT/oidc.log" 2>&1 &
pids+=($!)
server_pid=$!
wait_http "$issuer/.well-known/openid-configuration"

ratios=()
for round in $(seq 1 "$ROUNDS"); do

  # The floor, sent the same requests as claimguard's RS256 runs.
  start floor "$OUT/floor" -listen 127.0.0.1:18000
  wait_http http://127.0.0.1:18000/
  measure floor http://127.0.0.1:18000/authz/bench/api "$OUT/rs-few.lua"
  stop

  # The measured limit: the floor plus the bare signature check of each
  # distinct token, and nothing else.
  start floor-verify "$OUT/floor" -listen 127.0.0.1:18000 -verify "$OUT/jwks.json"
  wait_http http://127.0.0.1:18000/ 401
  for alg in rs es; do
    measure "floor-verify-$alg-many" http://127.0.0.1:18000/authz/bench/api "$OUT/$alg-many.lua"
  done
  stop

  # claimguard: few repeated tokens with the default cache; many distinct
  # tokens with a cache of 1000 entries, 20x smaller than the token cycle.
  for alg in rs es; do
    for set in few many; do
      cache=()
      [[ $set == many ]] && cache=(--cache-size 1000)
      start "claimguard-$alg-$set" "$OUT/claimguard" serve --policy-file "$OUT/policy.yaml" --listen 127.0.0.1:18080 "${cache[@]}"
      wait_http http://127.0.0.1:18080/readyz
      measure "claimguard-$alg-$set" http://127.0.0.1:18080/authz/bench/api "$OUT/$alg-$set.lua"
      [[ $round == 1 ]] && ratios+=("claimguard-$alg-$set=$(cache_ratio)")
      stop
    done
  done

  # oauth2-proxy as a bearer-JWT checker against the local issuer.
  start oauth2-proxy "$o2p" \
    --http-address=127.0.0.1:18002 \
    --provider=oidc --oidc-issuer-url="$issuer" \
    --client-id=bench --client-secret=unused \
    --cookie-secret=0123456789abcdef0123456789abcdef --cookie-secure=false \
    --email-domain='*' --upstream=static://200 \
    --skip-jwt-bearer-tokens=true --set-xauthrequest=true \
    --request-logging=false --auth-logging=false --standard-logging=false
  wait_http http://127.0.0.1:18002/ping
  for alg in rs es; do
    for set in few many; do
      measure "oauth2-proxy-$alg-$set" http://127.0.0.1:18002/oauth2/auth "$OUT/$alg-$set.lua"
    done
  done
  stop
done

# Bare signature checks (standard library), pinned like the servers.
taskset -c "$SERVER_CPU" go test -run '^$' -bench 'Bare/(RS256|ES256)$' -benchtime 2s ./internal/keys >"$OUT/bare.txt"
bare_rs=$(awk '/BenchmarkBare\/RS256/ {print $3}' "$OUT/bare.txt")
bare_es=$(awk '/BenchmarkBare\/ES256/ {print $3}' "$OUT/bare.txt")

# The table: the median of the rounds for each run.
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
names=$(awk '!seen[$1]++ {print $1}' "$OUT/results.txt")
declare -A RPS P50 P99 BAD
for n in $names; do
  RPS[$n]=$(awk -v n="$n" '$1 == n {print $2}' "$OUT/results.txt" | median)
  P50[$n]=$(awk -v n="$n" '$1 == n {print $3}' "$OUT/results.txt" | median)
  P99[$n]=$(awk -v n="$n" '$1 == n {print $4}' "$OUT/results.txt" | median)
  BAD[$n]=$(awk -v n="$n" '$1 == n {s += $5} END {print s}' "$OUT/results.txt")
done
floor_rps=${RPS[floor]}
echo
echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), wrk -t1 -c$CONNS -d$DURATION, median of $ROUNDS interleaved rounds, server on core $SERVER_CPU, wrk on core $WRK_CPU."
echo "Bare signature check (go test -bench Bare ./internal/keys): RS256 ${bare_rs} ns, ES256 ${bare_es} ns."
echo "Cache hit ratio of the claimguard runs (round 1): ${ratios[*]}."
echo
echo "| run | requests/s | p50 (µs) | p99 (µs) | non-2xx | ratio |"
echo "|---|---:|---:|---:|---:|---|"
for n in $names; do
  ratio=""
  case $n in
    claimguard-*-few) ratio=$(awk -v r="${RPS[$n]}" -v f="$floor_rps" 'BEGIN {printf "%.2fx floor", r/f}') ;;
    claimguard-*-many)
      bare=$bare_rs; [[ $n == *-es-* ]] && bare=$bare_es
      o2=${RPS[oauth2-proxy-${n#claimguard-}]}
      measured=${RPS[floor-verify-${n#claimguard-}]}
      ratio=$(awk -v r="${RPS[$n]}" -v f="$floor_rps" -v b="$bare" -v o="$o2" -v m="$measured" 'BEGIN {limit = 1e9/(1e9/f + b); printf "%.2fx limit (%.0f/s), %.2fx measured limit, %.2fx oauth2-proxy", r/limit, limit, r/m, r/o}') ;;
    floor-verify-*)
      bare=$bare_rs; [[ $n == *-es-* ]] && bare=$bare_es
      ratio=$(awk -v r="${RPS[$n]}" -v f="$floor_rps" -v b="$bare" 'BEGIN {printf "%.2fx limit", r/(1e9/(1e9/f + b))}') ;;
    oauth2-proxy-*-few)
      ratio=$(awk -v r="${RPS[claimguard-${n#oauth2-proxy-}]}" -v o="${RPS[$n]}" 'BEGIN {printf "claimguard %.2fx", r/o}') ;;
  esac
  printf '| %s | %.0f | %s | %s | %s | %s |\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" "${BAD[$n]}" "$ratio"
done
