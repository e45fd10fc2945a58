#!/usr/bin/env bash
# dev.sh (make dev): one command from a fresh clone to a running claimguard.
#
# Builds what is missing (kube-apiserver and etcd into bin/k8s, once; bin/claimguard;
# the dev environment program), then runs hack/devenv, which starts the control plane,
# runs claimguard manager on it with its webhooks, applies config/samples and a dev
# policy signed by a key it generates into .dev/, and prints curl commands to try.
# Ctrl-C stops everything it started.
#
# Environment:
#   DEV_DIR        where state goes (default .dev): kubeconfig, dev key, tokens,
#                  policies.yaml, manager.log
#   DEV_AUTH_ADDR  the forward-auth listener (default 127.0.0.1:8443; a free port
#                  is taken when it is busy)
#   DEV_ONLINE=1   let the manager reach the network (fetch real JWKS); by default it
#                  is kept offline, as the samples name identity providers that do not
#                  exist
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev_dir=${DEV_DIR:-$root/.dev}
mkdir -p "$dev_dir"

if ! command -v kubectl >/dev/null; then
  echo "make dev needs kubectl (for kustomize and to look around the cluster)" >&2
  exit 1
fi
make --no-print-directory controlplane build
go build -o "$root/bin/claimguard-devenv" ./hack/devenv

offline=true
[[ "${DEV_ONLINE:-}" == 1 ]] && offline=false
# exec: devenv receives the terminal's Ctrl-C itself and stops what it started.
exec "$root/bin/claimguard-devenv" \
  --root "$root" \
  --dir "$dev_dir" \
  --claimguard "$root/bin/claimguard" \
  --assets "${KUBEBUILDER_ASSETS:-$root/bin/k8s}" \
  --auth-addr "${DEV_AUTH_ADDR:-127.0.0.1:8443}" \
  --offline="$offline"
