package policy

import "net/http"

// Request is what the forward-auth server extracted from the auth sub-request.
type Request struct {
	// Header holds the headers of the auth request: the token sources
	// (Authorization, Cookie, ...).
	Header http.Header
	// Path is the raw path of the ORIGINAL request (from X-Original-URL or
	// X-Forwarded-Uri), query removed.
	Path string
	// PathConflict is set when X-Original-URL and X-Forwarded-Uri are both
	// present and disagree: such a request is never on a public path.
	PathConflict bool
}

// Header is one forwarded claim header.
type Header struct {
	// Name is the canonical header name.
	Name string
	// Value is the claim's value as the contract formats it.
	Value string
}

// Decision is the outcome of a request. Allowed is what the HTTP answer does
// (true in Audit mode).
type Decision struct {
	// Allowed: answer 200.
	Allowed bool
	// Status is 200, 401 or 403.
	Status int
	// Reason is "" when allowed outright; the would-be reason in Audit mode.
	Reason Reason
	// Description is a short human text for error_description; "" for an
	// allow and for token_missing. It never holds token or key material or a
	// whole claim value.
	Description string
	// Audit: allowed only because the policy is in Audit mode.
	Audit bool
	// Public: the original request's path is one of the public paths.
	Public bool
	// Headers are the forwarded claims; shared and read-only; nil when
	// denied, in Audit mode with a would-be denial, or on a public path.
	Headers []Header
	// WWWAuthenticate is the WWW-Authenticate value of a 401 or 403 answer
	// (RFC 6750), precomputed where possible; "" when Allowed.
	WWWAuthenticate string
}
