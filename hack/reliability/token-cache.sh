#!/usr/bin/env bash
# hack/reliability/token-cache.sh: the verified-token cache under 1,000,000 distinct tokens.
#
# Runs test/reliability TestTokenCacheBound with TOKENS distinct valid tokens (default
# 1,000,000; make test sends 200,000) against the manager's cache (10,000 entries) and serve's
# (100,000 entries). PASS (exit 0) when the entry and byte bounds hold and the live heap the
# cache holds stays within its byte bound plus 4 MiB; the test logs the measured numbers.
#
# Usage: hack/reliability/token-cache.sh   (TOKENS=1000000)
set -euo pipefail
cd "$(dirname "$0")/../.."
CLAIMGUARD_RELIABILITY_TOKENS=${TOKENS:-1000000} go test -count=1 -run '^TestTokenCacheBound$' -v ./test/reliability |
  grep -E '^(=== RUN|\s+---|\s+cache_test|ok|FAIL|PASS|panic)'
