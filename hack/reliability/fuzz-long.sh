#!/usr/bin/env bash
# hack/reliability/fuzz-long.sh: the long fuzz run of the reliability suite.
#
# Runs every Go fuzz target of the module (hack/fuzz.sh) with its input count times FUZZSCALE
# (default 60, about 10 minutes a target on 2 cores; make test runs them with 1, about 10 s) and
# prints, per target, the inputs executed and the corpus size go test reports. A crash leaves
# the failing input in the package's testdata/fuzz/<Target> and ends the run with a non-zero
# exit: commit that input with the fix, as a regression seed. Counts, not durations: see
# hack/fuzz.sh.
#
# Usage: hack/reliability/fuzz-long.sh   (FUZZSCALE=60)
set -euo pipefail
cd "$(dirname "$0")/../.."
export FUZZSCALE=${FUZZSCALE:-60}
log=$(mktemp /tmp/claimguard-fuzz.XXXXXX)
echo "fuzzing every target with FUZZSCALE=$FUZZSCALE; full output in $log" >&2
set +e
hack/fuzz.sh 2>&1 | tee "$log" | grep --line-buffered -vE '^fuzz: elapsed'
status=${PIPESTATUS[0]}
set -e
# The last progress line of each target: "fuzz: elapsed: 9m58s, execs: N (R/sec), new interesting: I (total: T)".
awk '/^fuzz \.\// {target = $2 " " $3} /^fuzz: elapsed:/ {last[target] = $0} END {for (t in last) print t ": " last[t]}' "$log" | sort
exit "$status"
