#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module, one after the other
# (`go test -fuzz` takes one target per run). Seed corpora live in each
# package's testdata/fuzz and are also run by the plain `go test`.
#
# Each target runs for a number of inputs, not for a time. With a duration
# (-fuzztime 10s) the fuzz coordinator of Go 1.26 can fail a clean run with a
# bare "context deadline exceeded" when the time runs out while a worker is
# still busy (golang/go#75804, fixed in Go 1.27); a count has no deadline to
# race. The counts below take about 10 s a target on 2 cores; FUZZSCALE
# multiplies them (FUZZSCALE=18 is about 3 minutes a target). A target not
# listed gets DEFAULT_EXECS.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${FUZZSCALE:-1}
if ! [[ $scale =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: FUZZSCALE must be a positive whole number, got \"$scale\"" >&2
  exit 2
fi

DEFAULT_EXECS=40000
execs_for() {
  case $1 in
    # Every input that compiles builds CEL programs and parses keys: from
    # 200 to 2,000 inputs a second, against 4,000 to 8,000 for the others.
    FuzzCompile) echo 10000 ;;
    FuzzServeHTTP) echo 25000 ;;
    FuzzOriginalPath) echo 12000 ;;
    *) echo "$DEFAULT_EXECS" ;;
  esac
}

found=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/'); do
    found=$((found + 1))
    n=$(($(execs_for "$target") * scale))
    echo "fuzz $pkg $target for $n inputs" >&2
    # go test's own -timeout (10m by default) would cut a long run short;
    # 5 minutes per FUZZSCALE still stops a wedged one.
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "${n}x" -parallel 2 -timeout "$((scale * 5))m"
  done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' 2>/dev/null | sort)
echo "fuzz: $found targets ran clean" >&2
