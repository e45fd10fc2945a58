package policy

import "net/http"

// Reason is a contract reason code. It is declared once here and the same
// string is used by the decision, the HTTP answer, logs, metrics, the Audit
// header and explain.
type Reason string

// The reason codes of CONTRACT.md, in the order the checks run.
const (
	// TokenMissing: no token in any configured source.
	TokenMissing Reason = "token_missing"
	// TokenMalformed: not a compact JWS, bad encoding or JSON, an
	// unsupported crit, a repeated source, a registered claim of the wrong type.
	TokenMalformed Reason = "token_malformed"
	// TokenTooLarge: the token is over the size cap.
	TokenTooLarge Reason = "token_too_large"
	// AlgNotAllowed: the header alg is outside the allow-list, "none", or not
	// one the chosen key can serve.
	AlgNotAllowed Reason = "alg_not_allowed"
	// KeyNotFound: the kid names no key of the issuer, or no key fits.
	KeyNotFound Reason = "key_not_found"
	// KeysUnavailable: the issuer's key set has never loaded.
	KeysUnavailable Reason = "keys_unavailable"
	// SignatureInvalid: the signature does not verify with the chosen key.
	SignatureInvalid Reason = "signature_invalid"
	// ExpiryMissing: no exp while the issuer requires one.
	ExpiryMissing Reason = "expiry_missing"
	// TokenExpired: exp + clockSkew is in the past.
	TokenExpired Reason = "token_expired"
	// TokenNotYetValid: nbf - clockSkew is in the future.
	TokenNotYetValid Reason = "token_not_yet_valid"
	// TokenIssuedInFuture: iat - clockSkew is in the future.
	TokenIssuedInFuture Reason = "token_issued_in_future"
	// IssuerMismatch: iss absent or not one of the policy's issuers.
	IssuerMismatch Reason = "issuer_mismatch"
	// AudienceMismatch: aud absent or holding none of the issuer's audiences.
	AudienceMismatch Reason = "audience_mismatch"
	// ClaimMissing: a required claim is absent, null, or behind a non-object.
	ClaimMissing Reason = "claim_missing"
	// ClaimMismatch: a required claim is present but fails its operator.
	ClaimMismatch Reason = "claim_mismatch"
	// RuleFailed: a CEL rule is false or fails at run time.
	RuleFailed Reason = "rule_failed"
	// PolicyNotFound: no such policy, or one that does not compile.
	PolicyNotFound Reason = "policy_not_found"
)

// allReasons lists every reason code once; AllReasons hands out copies.
var allReasons = [...]Reason{
	TokenMissing, TokenMalformed, TokenTooLarge, AlgNotAllowed, KeyNotFound,
	KeysUnavailable, SignatureInvalid, ExpiryMissing, TokenExpired,
	TokenNotYetValid, TokenIssuedInFuture, IssuerMismatch, AudienceMismatch,
	ClaimMissing, ClaimMismatch, RuleFailed, PolicyNotFound,
}

// AllReasons returns every reason code, for metrics pre-registration and tests.
func AllReasons() []Reason {
	out := make([]Reason, len(allReasons))
	copy(out, allReasons[:])
	return out
}

// Status returns the HTTP status of a denial with this reason: 403 for a
// valid token that fails a required claim or a rule, and for an unknown
// policy (fail closed); 401 for everything else. The empty reason (an allowed
// request) is 200.
func (r Reason) Status() int {
	switch r {
	case "":
		return http.StatusOK
	case ClaimMissing, ClaimMismatch, RuleFailed, PolicyNotFound:
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}

// Valid reports whether r is one of the contract's reason codes.
func (r Reason) Valid() bool {
	for _, x := range allReasons {
		if x == r {
			return true
		}
	}
	return false
}

// oauthError is the RFC 6750 error code carried in WWW-Authenticate.
func (r Reason) oauthError() string {
	switch r {
	case ClaimMissing, ClaimMismatch, RuleFailed:
		return "insufficient_scope"
	default:
		return "invalid_token"
	}
}

// realmChallenge is the challenge for a request without any token (RFC 6750
// §3.1: no error code, no description).
const realmChallenge = `Bearer realm="claimguard"`

// Challenge returns the WWW-Authenticate value for a denial with this reason
// and description: a realm-only challenge for token_missing, otherwise an
// RFC 6750 error with the description as a quoted string. The description is
// sanitised: quotes and backslashes are escaped and control characters dropped,
// so nothing from a token can break out of the header.
func Challenge(r Reason, description string) string {
	switch r {
	case "":
		return ""
	case TokenMissing:
		return realmChallenge
	case PolicyNotFound:
		// Not an OAuth failure: the request never reached a policy.
		return ""
	}
	b := make([]byte, 0, 64+len(description))
	b = append(b, `Bearer error="`...)
	b = append(b, r.oauthError()...)
	b = append(b, `", error_description="`...)
	for i := 0; i < len(description); i++ {
		c := description[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			// dropped: header values must not carry control characters
		default:
			b = append(b, c)
		}
	}
	b = append(b, '"')
	return string(b)
}
