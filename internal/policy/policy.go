package policy

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/google/cel-go/cel"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
)

// SecretResolver returns the bytes of key `key` of Secret `name` in
// `namespace`; it returns an error wrapping ErrSecretNotFound when the Secret
// or the key does not exist.
type SecretResolver func(namespace, name, key string) ([]byte, error)

// ErrSecretNotFound is wrapped by a SecretResolver's error when the Secret or
// its key does not exist.
var ErrSecretNotFound = errors.New("secret not found")

// CompileOptions are the inputs of Compile besides the spec.
type CompileOptions struct {
	// Namespace and Name identify the policy (secretRefs resolve in Namespace).
	Namespace, Name string
	// Revision identifies this version of the policy (uid/generation or a
	// content hash). It is part of the cache key, so an edit invalidates
	// cached decisions. Empty: a value unique to this compilation is used.
	Revision string
	// Fetcher serves remote key sets; nil: uri and discovery sources are
	// only syntax-checked (admission webhook) and report keys_unavailable.
	Fetcher *keys.Fetcher
	// Secrets resolves secretRefs; nil: they are only syntax-checked and
	// report keys_unavailable.
	Secrets SecretResolver
	// AllowInsecureHTTP allows http:// JWKS URIs and issuers (loopback tests).
	AllowInsecureHTTP bool
	// MaxTokenBytes is the token size cap; 0: DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Cache is the shared verified-token cache; nil: no caching.
	Cache *Cache
	// Clock returns the current time; nil: time.Now.
	Clock func() time.Time
}

// DefaultMaxTokenBytes is the default token size cap (8 KiB).
const DefaultMaxTokenBytes = 8192

// Policy is a compiled JWTPolicy. It is immutable and safe for concurrent use.
type Policy struct {
	namespace, name string
	id              string // "namespace/name"
	mode            authv1alpha1.PolicyMode
	audit           bool

	issuers  []*issuer
	claims   []requiredClaim
	rules    []rule
	forwards []forwardClaim
	sources  []tokenSource
	public   publicMatcher

	forwardHeaders []string
	skew           time.Duration
	skewSec        float64
	maxToken       int
	clock          func() time.Time

	cache       *Cache
	cachePrefix []byte // length-prefixed namespace, name, revision, key fingerprint
}

// issuer is a compiled spec.issuers entry.
type issuer struct {
	name       string
	audiences  []string
	algs       algSet
	requireExp bool
	source     string // uri, discovery, secret, inline

	static    *keys.Set    // inline or Secret set; nil when unresolved
	staticErr error        // why a Secret set is unavailable
	remote    *keys.Remote // uri or discovery

	// Precomputed denials naming this issuer.
	dAlg, dAudience, dKeyNotFound, dAlgKey, dSig, dExpiry, dExpired, dNBF, dIAT denial
}

// requiredClaim is a compiled spec.requiredClaims entry.
type requiredClaim struct {
	path     ClaimPath
	pathText string
	op       authv1alpha1.ClaimOperator
	values   []string
	patterns []*regexp.Regexp
	missing  denial
	mismatch denial
}

// rule is a compiled spec.rules entry.
type rule struct {
	expression string
	program    cel.Program
	failed     denial
}

// forwardClaim is a compiled spec.forwardClaims entry.
type forwardClaim struct {
	path     ClaimPath
	pathText string
	header   string // canonical
}

// denial is a reason with its description and the WWW-Authenticate value,
// built once so a denial costs no formatting on the request path.
type denial struct {
	reason    Reason
	desc      string
	challenge string
}

func newDenial(r Reason, desc string) denial {
	return denial{reason: r, desc: desc, challenge: Challenge(r, desc)}
}

// Namespace returns the policy's namespace.
func (p *Policy) Namespace() string { return p.namespace }

// Name returns the policy's name.
func (p *Policy) Name() string { return p.name }

// Mode returns Enforce or Audit.
func (p *Policy) Mode() authv1alpha1.PolicyMode { return p.mode }

// ForwardHeaders returns the canonical header names of forwardClaims, so the
// server can strip client-sent copies of them.
func (p *Policy) ForwardHeaders() []string {
	out := make([]string, len(p.forwardHeaders))
	copy(out, p.forwardHeaders)
	return out
}

// MaxTokenBytes returns the token size cap in force.
func (p *Policy) MaxTokenBytes() int { return p.maxToken }

// IssuerKeyStatus reports the key set of one issuer.
type IssuerKeyStatus struct {
	// Issuer is the issuer's "iss" value.
	Issuer string
	// Source is where the keys come from: uri, discovery, secret or inline.
	Source string
	// KIDs are the key ids of the current set ("" for a key without one).
	KIDs []string
	// Loaded: the set has loaded at least once.
	Loaded bool
	// Stale: a later refresh failed and the last good set is served.
	Stale bool
	// LastRefresh is when the set last loaded (zero for static sets).
	LastRefresh time.Time
	// Skipped are the keys of a remote set that were left out.
	Skipped []keys.Skipped
	// Err says why the set is unavailable or stale; nil when fine.
	Err error
}

// KeyStatus reports every issuer's key set, in spec order.
func (p *Policy) KeyStatus() []IssuerKeyStatus {
	out := make([]IssuerKeyStatus, 0, len(p.issuers))
	for _, iss := range p.issuers {
		st := IssuerKeyStatus{Issuer: iss.name, Source: iss.source}
		switch {
		case iss.remote != nil:
			set, s := iss.remote.Current()
			st.Loaded, st.Stale, st.LastRefresh, st.Skipped, st.Err = s.Loaded, s.Stale, s.LastRefresh, s.Skipped, s.LastError
			if set != nil {
				st.KIDs = set.KIDs()
			}
		case iss.static != nil:
			st.Loaded = true
			st.KIDs = iss.static.KIDs()
		default:
			st.Err = iss.staticErr
		}
		out = append(out, st)
	}
	return out
}

// KeysReady reports whether every issuer's key set has loaded at least once.
func (p *Policy) KeysReady() bool {
	for _, iss := range p.issuers {
		switch {
		case iss.remote != nil:
			if _, s := iss.remote.Current(); !s.Loaded {
				return false
			}
		case iss.static == nil:
			return false
		}
	}
	return true
}

// WaitKeys waits until the first fetch of every remote set has finished
// (successfully or not), or ctx ends.
func (p *Policy) WaitKeys(ctx context.Context) error {
	for _, iss := range p.issuers {
		if iss.remote != nil {
			if err := iss.remote.WaitLoaded(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Decide decides one request. It never panics on malformed input and never
// blocks for longer than one key fetch (an unknown kid on a remote set).
func (p *Policy) Decide(r *Request) Decision {
	return p.decide(r, nil)
}

// Explain decides like Decide, on the same code path but without the cache,
// and records every step. For an Audit-mode policy it returns what Enforce
// would decide and notes the mode in the trace.
func (p *Policy) Explain(r *Request) (Decision, *Trace) {
	tr := &Trace{Policy: p.id, Mode: string(p.mode)}
	d := p.decide(r, tr)
	if p.audit {
		if tr != nil {
			tr.add("mode", true, "the policy is in Audit mode: this is what Enforce would decide; the request itself is allowed")
		}
	}
	return d, tr
}

// decide is Decide and Explain: tr is nil for Decide.
func (p *Policy) decide(r *Request, tr *Trace) Decision {
	if r == nil {
		r = &Request{}
	}
	if p.public.match(r) {
		if tr != nil {
			tr.add("public_path", true, "%s is a public path: the token is not looked at", shorten([]byte(r.Path)))
		}
		return Decision{Allowed: true, Status: http.StatusOK, Public: true}
	}
	if tr != nil && (len(p.public.exact) > 0 || len(p.public.prefixes) > 0) {
		if tr != nil {
			tr.add("public_path", true, "%s is not a public path", shorten([]byte(r.Path)))
		}
	}
	tok, d, ok := p.extractToken(r.Header, tr)
	if !ok {
		return p.finish(&outcome{denial: d}, tr)
	}
	if len(tok) > p.maxToken {
		if tr != nil {
			tr.add("size", false, "token is %d bytes, over the cap of %d", len(tok), p.maxToken)
		}
		return p.finish(&outcome{denial: dTooLarge}, tr)
	}
	if tr != nil {
		tr.add("size", true, "token is %d bytes (cap %d)", len(tok), p.maxToken)
	}
	if p.cache != nil && tr == nil {
		return p.decideCached(tok)
	}
	o := p.verify(tok, tr)
	return p.finish(&o, tr)
}

// extractToken applies the token sources in order; only the first present
// one is used.
func (p *Policy) extractToken(h http.Header, tr *Trace) (string, denial, bool) {
	for i := range p.sources {
		s := &p.sources[i]
		tok, res, why := s.extract(h)
		switch res {
		case sourceToken:
			if tr != nil {
				tr.add("token_source", true, "token read from %s", s.desc)
			}
			return tok, denial{}, true
		case sourceMalformed:
			if tr != nil {
				tr.add("token_source", false, "%s: %s", s.desc, why)
			}
			return "", newDenial(TokenMalformed, why), false
		}
	}
	if tr != nil {
		tr.add("token_source", false, "no token in any source (%d tried)", len(p.sources))
	}
	return "", dMissing, false
}

// finish turns an outcome into the Decision, applying the mode.
func (p *Policy) finish(o *outcome, tr *Trace) Decision {
	if o.reason == "" {
		return Decision{Allowed: true, Status: http.StatusOK, Headers: o.headers}
	}
	desc := o.desc
	if o.reason == TokenMissing {
		desc = ""
	}
	if p.audit && tr == nil {
		return Decision{Allowed: true, Status: http.StatusOK, Reason: o.reason, Description: desc, Audit: true}
	}
	return Decision{Status: o.reason.Status(), Reason: o.reason, Description: desc, WWWAuthenticate: o.challenge}
}

// PolicyNotFoundDecision is the answer for a request to a policy that does
// not exist or does not compile: 403, fail closed. description says which
// (it is for logs; the contract sends no WWW-Authenticate challenge, since no
// token was judged).
func PolicyNotFoundDecision(description string) Decision {
	return Decision{Status: PolicyNotFound.Status(), Reason: PolicyNotFound, Description: description}
}

// Static denials.
var (
	dMissing     = newDenial(TokenMissing, "")
	dTooLarge    = newDenial(TokenTooLarge, "the token is larger than the size cap")
	dParts       = newDenial(TokenMalformed, "the token is not a compact JWS (three dot-separated parts)")
	dJWE         = newDenial(TokenMalformed, "the token is a JWE (five parts); only signed tokens (JWS) are accepted")
	dB64         = newDenial(TokenMalformed, "a token part is not valid unpadded base64url")
	dHeaderJSON  = newDenial(TokenMalformed, "the token header is not a JSON object (or holds duplicate keys)")
	dPayloadJSON = newDenial(TokenMalformed, "the token payload is not a JSON object (or holds duplicate keys)")
	dAlgType     = newDenial(TokenMalformed, `the token header has no "alg" string`)
	dKidType     = newDenial(TokenMalformed, `the token header "kid" is not a string`)
	dCrit        = newDenial(TokenMalformed, `the token header has a "crit" extension claimguard does not support`)
	dTimeType    = newDenial(TokenMalformed, `a time claim ("exp", "nbf" or "iat") is not a number`)
	dIssType     = newDenial(TokenMalformed, `the "iss" claim is not a string`)
	dAudType     = newDenial(TokenMalformed, `the "aud" claim is not a string or an array of strings`)
	dIssAbsent   = newDenial(IssuerMismatch, `the token has no "iss" claim`)
	dIssUnknown  = newDenial(IssuerMismatch, `the token's "iss" is not an issuer of this policy`)
	dAlgNone     = newDenial(AlgNotAllowed, `alg "none" is never accepted`)
	dAlgUnknown  = newDenial(AlgNotAllowed, "the token's alg is not a supported signing algorithm")
)
