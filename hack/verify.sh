#!/usr/bin/env bash
# verify.sh fails when generated files are stale (run after `make manifests
# generate`, which regenerate them in place) or Go files are not gofmt'ed.
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(api/v1alpha1/zz_generated.deepcopy.go config/crd config/rbac config/webhook)
[[ -d charts/claimguard/crds ]] && generated+=(charts/claimguard)
status=0
if ! git diff --quiet -- "${generated[@]}"; then
  echo "Generated files are stale; run 'make manifests generate' and commit:" >&2
  git diff --stat -- "${generated[@]}" >&2
  status=1
fi
untracked=$(git ls-files --others --exclude-standard -- "${generated[@]}")
if [[ -n "$untracked" ]]; then
  echo "Generated files are not committed:" >&2
  echo "$untracked" >&2
  status=1
fi
# Helm ships its own copy of the CRDs; it must be byte-identical.
if [[ -d charts/claimguard/crds ]]; then
  for f in config/crd/bases/*.yaml; do
    if ! cmp -s "$f" "charts/claimguard/crds/$(basename "$f")"; then
      echo "charts/claimguard/crds/$(basename "$f") differs from $f; run 'make manifests'" >&2
      status=1
    fi
  done
fi
if ! tidy=$(go mod tidy -diff 2>&1); then
  echo "go.mod/go.sum are not tidy (run 'go mod tidy'):" >&2
  echo "$tidy" >&2
  status=1
fi
unformatted=$(gofmt -s -l $(git ls-files '*.go') 2>/dev/null || true)
if [[ -n "$unformatted" ]]; then
  echo "Not gofmt'ed (run 'make fmt'):" >&2
  echo "$unformatted" >&2
  status=1
fi
exit $status
