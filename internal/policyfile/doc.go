// Package policyfile loads JWTPolicy manifests from a file for the standalone
// commands (serve, explain), compiles them with the same policy.Compile as the
// cluster, and watches the file so serve can swap in a new snapshot when it
// changes.
package policyfile
