// Package store holds the compiled policies the forward-auth server answers
// from: an immutable Snapshot behind an atomic pointer, read without locks and
// replaced whole by whoever feeds it (the policy-file watcher of `serve`, the
// informer-driven builder of `manager`).
package store
