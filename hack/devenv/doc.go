// Command devenv is the body of `make dev`: it starts a local control plane (etcd and
// kube-apiserver, through envtest), installs claimguard's CRD and webhook configurations,
// runs `claimguard manager` against it, applies config/samples and a dev policy whose
// inline key it generates, mints tokens, and prints curl commands that are allowed (200),
// denied as unauthenticated (401) and denied as forbidden (403), and the explain command
// for the 403. It stops everything it started on SIGINT or SIGTERM. hack/dev.sh builds
// it and the binaries it needs, and runs it.
package main
