#!/usr/bin/env bash
# hack/bench/run.sh: the forward-auth benchmark, in one go, on loopback.
#
# For the same duration and concurrency, wrk drives:
#   floor        a Go server that always answers 200 (the HTTP floor)
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
# Usage: hack/bench/run.sh            (DURATION=10s CONNS=32 MANY=20000 by default)
# Output: a Markdown table on stdout, logs and raw wrk output in $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
FEW=${FEW:-10}
MANY=${MANY:-20000}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
OAUTH2_PROXY_VERSION=v7.15.6
OUT=${OUT:-$(mktemp -d /tmp/claimguard-bench.XXXXXX)}

for tool in wrk taskset curl; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is not installed (apt-get install wrk util-linux curl)" >&2; exit 1; }
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
  taskset -c "$SERVER_CPU" "$@" >"$OUT/$name.log" 2>&1 &
  pids+=($!)
  server_pid=$!
}
stop() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
}
wait_http() { # URL [expected status]
  for _ in $(seq 1 200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    [[ $code == "${2:-200}" ]] && return 0
    sleep 0.05
  done
  echo "run.sh: $1 did not answer ${2:-200}" >&2
  exit 1
}

rows=()
# measure NAME URL [LUA]: a 1s warm-up, then the measured run; records
# requests/s, p50 and p99 latency and the count of non-2xx answers.
measure() {
  local name=$1 url=$2 lua=${3:-}
  local args=(-t1 -c"$CONNS" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  taskset -c "$WRK_CPU" wrk "${args[@]}" -d1s "$url" >/dev/null
  taskset -c "$WRK_CPU" wrk "${args[@]}" -d"$DURATION" "$url" >"$OUT/$name.wrk"
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$OUT/$name.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$OUT/$name.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$OUT/$name.wrk")
  bad=$(awk '/Non-2xx or 3xx responses:/ {print $5}' "$OUT/$name.wrk")
  rows+=("$name|$rps|$p50|$p99|${bad:-0}")
  echo "$name: $rps req/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}" >&2
}
cache_ratio() { # prints hits/(hits+misses) from claimguard's /metrics
  curl -s http://127.0.0.1:18080/metrics | awk '/^claimguard_cache_hits_total/ {h=$2} /^claimguard_cache_misses_total/ {m=$2} END {if (h+m > 0) printf "%.3f", h/(h+m); else print "n/a"}'
}

# The floor.
start floor "$OUT/floor" -listen 127.0.0.1:18000
wait_http http://127.0.0.1:18000/
measure floor http://127.0.0.1:18000/
stop

# claimguard: few repeated tokens with the default cache; many distinct
# tokens with a cache of 1000 entries, 20x smaller than the token cycle.
ratios=()
for alg in rs es; do
  for set in few many; do
    cache=()
    [[ $set == many ]] && cache=(--cache-size 1000)
    start "claimguard-$alg-$set" "$OUT/claimguard" serve --policy-file "$OUT/policy.yaml" --listen 127.0.0.1:18080 "${cache[@]}"
    wait_http http://127.0.0.1:18080/readyz
    measure "claimguard-$alg-$set" http://127.0.0.1:18080/authz/bench/api "$OUT/$alg-$set.lua"
    ratios+=("claimguard-$alg-$set=$(cache_ratio)")
    stop
  done
done

# oauth2-proxy as a bearer-JWT checker against the local issuer.
taskset -c "$WRK_CPU" "$OUT/oidc" -listen 127.0.0.1:18001 -issuer "$issuer" -jwks "$OUT/jwks.json" >"$OUT/oidc.log" 2>&1 &
pids+=($!)
wait_http "$issuer/.well-known/openid-configuration"
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

# Bare signature checks (standard library), pinned like the servers.
taskset -c "$SERVER_CPU" go test -run '^$' -bench 'Bare/(RS256|ES256)$' -benchtime 2s ./internal/keys >"$OUT/bare.txt"
bare_rs=$(awk '/BenchmarkBare\/RS256/ {print $3}' "$OUT/bare.txt")
bare_es=$(awk '/BenchmarkBare\/ES256/ {print $3}' "$OUT/bare.txt")

# The table.
floor_rps=$(echo "${rows[0]}" | cut -d'|' -f2)
echo
echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), wrk -t1 -c$CONNS -d$DURATION, server on core $SERVER_CPU, wrk on core $WRK_CPU."
echo "Bare signature check (go test -bench Bare ./internal/keys): RS256 ${bare_rs} ns, ES256 ${bare_es} ns."
echo "Cache hit ratio of the claimguard runs: ${ratios[*]}."
echo
echo "| run | requests/s | p50 | p99 | non-2xx | ratio |"
echo "|---|---:|---:|---:|---:|---|"
for row in "${rows[@]}"; do
  IFS='|' read -r name rps p50 p99 bad <<<"$row"
  ratio=""
  case $name in
    claimguard-*-few) ratio=$(awk -v r="$rps" -v f="$floor_rps" 'BEGIN {printf "%.2fx floor", r/f}') ;;
    claimguard-*-many)
      bare=$bare_rs; [[ $name == *-es-* ]] && bare=$bare_es
      o2=$(printf '%s\n' "${rows[@]}" | awk -F'|' -v n="oauth2-proxy-${name#claimguard-}" '$1 == n {print $2}')
      ratio=$(awk -v r="$rps" -v f="$floor_rps" -v b="$bare" -v o="$o2" 'BEGIN {limit = 1e9/(1e9/f + b); printf "%.2fx limit (%.0f/s), %.2fx oauth2-proxy", r/limit, limit, r/o}') ;;
  esac
  echo "| $name | $rps | $p50 | $p99 | $bad | $ratio |"
done
