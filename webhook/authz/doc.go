// Package authz is the forward-auth HTTP server: GET|POST|... on
// /authz/{namespace}/{policy} answers 200 with the forwarded claim headers,
// or 401/403 with an RFC 6750 challenge and a reason code, deciding from the
// immutable policy snapshot of internal/store. It also serves /healthz,
// /readyz and /metrics, and runs as a controller-runtime Runnable on every
// replica or on its own (claimguard serve).
package authz
