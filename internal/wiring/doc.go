// Package wiring decides which JWTPolicy guards which Ingress or HTTPRoute and what claimguard
// writes on it, shared by the reconciler (which applies it) and the admission webhooks (which
// add it at creation and refuse changes that remove it), so both compute exactly the same answer.
package wiring
