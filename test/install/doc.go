// Package install tests how claimguard is installed: the Helm chart (lint, golden
// renders, install, upgrade and uninstall on a real API server, values schema), the
// kustomize configuration under config/ (server-side dry run), the agreement of both
// with controller-gen's RBAC and webhooks and with the manager's flags, and the README.
package install
