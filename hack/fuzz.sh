#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module for FUZZTIME each (default
# 10s). `go test -fuzz` takes one target per run, so each runs on its own.
# Seed corpora live in each package's testdata/fuzz and are also run by the
# plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-10s}
found=0
while IFS= read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/'); do
    found=$((found + 1))
    echo "fuzz $pkg $target for $fuzztime" >&2
    go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 2
  done
done < <(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz' 2>/dev/null | sort)
echo "fuzz: $found targets ran clean" >&2
