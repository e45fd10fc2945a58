package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
)

// Limits that the CRD schema also enforces. Compile checks them again because
// `serve` and `explain` read policy files that never met the API server.
const (
	maxIssuers        = 16
	maxAudiences      = 16
	maxRequiredClaims = 64
	maxClaimValues    = 64
	maxRules          = 32
	maxForwardClaims  = 32
	maxTokenSources   = 8
	maxPublicPaths    = 64
	maxClockSkew      = 5 * time.Minute
	maxClaimPathLen   = 256
	maxValueLen       = 1024
	maxExpressionLen  = 4096
	maxMessageLen     = 256
	maxPublicPathLen  = 1024
	maxURILen         = 2048
	maxInlineLen      = 65536
	maxHeaderNameLen  = 128
)

// compileSeq makes an empty Revision unique to its compilation.
var compileSeq atomic.Uint64

// Compile validates a spec and compiles it into a Policy. Every error names
// its field path (spec.requiredClaims[2].values[0]) and says the fix. It
// applies the API defaults itself (mode Enforce, algorithms RS256+ES256,
// requireExpiry true, clockSkew 30s, the Authorization header with the
// Bearer scheme), so a policy file without defaults behaves like a stored
// object. A Secret that is absent is not a compile error: that issuer reports
// keys_unavailable at request time and in KeyStatus.
func Compile(spec *authv1alpha1.JWTPolicySpec, opts CompileOptions) (*Policy, field.ErrorList) {
	root := field.NewPath("spec")
	if spec == nil {
		return nil, field.ErrorList{field.Required(root, "a JWTPolicy needs a spec")}
	}
	p := &Policy{
		namespace: opts.Namespace,
		name:      opts.Name,
		id:        opts.Namespace + "/" + opts.Name,
		maxToken:  opts.MaxTokenBytes,
		clock:     opts.Clock,
		cache:     opts.Cache,
	}
	if p.maxToken <= 0 {
		p.maxToken = DefaultMaxTokenBytes
	}
	if p.clock == nil {
		p.clock = time.Now
	}
	var errs field.ErrorList

	switch spec.Mode {
	case "", authv1alpha1.ModeEnforce:
		p.mode = authv1alpha1.ModeEnforce
	case authv1alpha1.ModeAudit:
		p.mode, p.audit = authv1alpha1.ModeAudit, true
	default:
		errs = append(errs, field.NotSupported(root.Child("mode"), spec.Mode,
			[]string{string(authv1alpha1.ModeEnforce), string(authv1alpha1.ModeAudit)}))
	}

	// The key fingerprint goes into the cache key: a Secret whose content
	// changes without a new policy revision must not keep old verdicts.
	fingerprint := sha256.New()
	errs = append(errs, p.compileIssuers(spec.Issuers, root.Child("issuers"), opts, fingerprint)...)
	errs = append(errs, p.compileClaims(spec.RequiredClaims, root.Child("requiredClaims"))...)
	errs = append(errs, p.compileRules(spec.Rules, root.Child("rules"))...)
	errs = append(errs, p.compileSources(spec.TokenSources, root.Child("tokenSources"))...)
	errs = append(errs, p.compileForwards(spec.ForwardClaims, root.Child("forwardClaims"))...)
	errs = append(errs, p.compilePublicPaths(spec.PublicPaths, root.Child("publicPaths"))...)

	p.skew = 30 * time.Second
	if spec.ClockSkew != nil {
		p.skew = spec.ClockSkew.Duration
		if p.skew < 0 || p.skew > maxClockSkew {
			errs = append(errs, field.Invalid(root.Child("clockSkew"), spec.ClockSkew.Duration.String(),
				"must be between 0s (no leeway) and 5m"))
		}
	}
	p.skewSec = p.skew.Seconds()

	if len(errs) > 0 {
		return nil, errs
	}
	revision := opts.Revision
	if revision == "" {
		revision = "\x00compile-" + strconv.FormatUint(compileSeq.Add(1), 10)
	}
	for _, part := range []string{opts.Namespace, opts.Name, revision, string(fingerprint.Sum(nil))} {
		p.cachePrefix = binary.AppendUvarint(p.cachePrefix, uint64(len(part)))
		p.cachePrefix = append(p.cachePrefix, part...)
	}
	return p, nil
}

func (p *Policy) compileIssuers(specs []authv1alpha1.Issuer, fp *field.Path, opts CompileOptions, fingerprint interface{ Write([]byte) (int, error) }) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(specs) == 0:
		return field.ErrorList{field.Required(fp, "list at least one issuer, with its keys (jwks)")}
	case len(specs) > maxIssuers:
		errs = append(errs, field.TooMany(fp, len(specs), maxIssuers))
	}
	seen := map[string]bool{}
	for i := range specs {
		s := &specs[i]
		ip := fp.Index(i)
		is := &issuer{name: s.Issuer, audiences: s.Audiences, requireExp: s.RequireExpiry == nil || *s.RequireExpiry}
		switch {
		case s.Issuer == "":
			errs = append(errs, field.Required(ip.Child("issuer"), `the exact "iss" value of the tokens, such as "https://idp.example.com/realms/shop"`))
		case len(s.Issuer) > 1024:
			errs = append(errs, field.TooLong(ip.Child("issuer"), "", 1024))
		case seen[s.Issuer]:
			errs = append(errs, field.Duplicate(ip.Child("issuer"), s.Issuer))
		}
		seen[s.Issuer] = true
		if len(s.Audiences) > maxAudiences {
			errs = append(errs, field.TooMany(ip.Child("audiences"), len(s.Audiences), maxAudiences))
		}
		for j, a := range s.Audiences {
			if a == "" || len(a) > 256 {
				errs = append(errs, field.Invalid(ip.Child("audiences").Index(j), a, "an audience is 1 to 256 characters"))
			}
		}

		// Algorithms.
		algs := s.Algorithms
		if len(algs) == 0 {
			algs = authv1alpha1.DefaultAlgorithms
		}
		var names []string
		algErrs := len(errs)
		for j, a := range algs {
			ap := ip.Child("algorithms").Index(j)
			id := algByName([]byte(a))
			switch {
			case isNone([]byte(a)):
				errs = append(errs, field.Invalid(ap, a, `"none" is never accepted; list signing algorithms such as RS256 or ES256`))
			case id == algUnknown:
				errs = append(errs, field.NotSupported(ap, a, algNames[1:]))
			case is.algs.has(id):
				errs = append(errs, field.Duplicate(ap, a))
			case id.symmetric() && s.JWKS.SecretRef == nil:
				errs = append(errs, field.Invalid(ap, a, "HS256/HS384/HS512 need a shared secret, which only jwks.secretRef can hold; use an asymmetric algorithm or a secretRef"))
			default:
				is.algs.add(id)
				names = append(names, string(a))
			}
		}
		if len(errs) == algErrs {
			// Keys are checked against the allow-list, so a broken list
			// would only add confusing follow-up errors.
			errs = append(errs, p.compileKeys(is, s, ip.Child("jwks"), names, opts, fingerprint)...)
		}

		q := strconv.Quote(s.Issuer)
		is.dAlg = newDenial(AlgNotAllowed, "the token's alg is not allowed for issuer "+q)
		is.dAlgKey = newDenial(AlgNotAllowed, "the token's alg is not one the chosen key of issuer "+q+" can serve")
		is.dKeyNotFound = newDenial(KeyNotFound, "no key of issuer "+q+" matches the token's kid and alg")
		is.dSig = newDenial(SignatureInvalid, "the token's signature does not verify with the keys of issuer "+q)
		is.dExpiry = newDenial(ExpiryMissing, `the token has no "exp" claim`)
		is.dExpired = newDenial(TokenExpired, "the token has expired")
		is.dNBF = newDenial(TokenNotYetValid, `the token is not valid yet ("nbf")`)
		is.dIAT = newDenial(TokenIssuedInFuture, `the token was issued in the future ("iat")`)
		is.dAudience = newDenial(AudienceMismatch, `the token's "aud" holds none of the audiences of issuer `+q)
		p.issuers = append(p.issuers, is)
	}
	return errs
}

// compileKeys resolves one issuer's key source.
func (p *Policy) compileKeys(is *issuer, s *authv1alpha1.Issuer, jp *field.Path, algs []string, opts CompileOptions, fingerprint interface{ Write([]byte) (int, error) }) field.ErrorList {
	src := s.JWKS
	n := 0
	for _, set := range []bool{src.URI != "", src.Discovery, src.SecretRef != nil, src.Inline != ""} {
		if set {
			n++
		}
	}
	switch n {
	case 0:
		return field.ErrorList{field.Required(jp, "set one of uri, discovery, secretRef or inline")}
	case 1:
	default:
		return field.ErrorList{field.Invalid(jp, field.OmitValueType{}, "set only one of uri, discovery, secretRef or inline")}
	}
	popts := keys.ParseOptions{Algorithms: algs}
	switch {
	case src.Inline != "":
		is.source = "inline"
		if len(src.Inline) > maxInlineLen {
			return field.ErrorList{field.TooLong(jp.Child("inline"), "", maxInlineLen)}
		}
		set, err := keys.ParseStrict([]byte(src.Inline), popts)
		if err != nil {
			return field.ErrorList{field.Invalid(jp.Child("inline"), field.OmitValueType{},
				fmt.Sprintf("%v; inline holds public keys only, as a JWKS document {\"keys\":[...]}", err))}
		}
		is.static = set

	case src.SecretRef != nil:
		is.source = "secret"
		ref := src.SecretRef
		rp := jp.Child("secretRef")
		var errs field.ErrorList
		if !validSecretName(ref.Name) {
			errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, "must be a Secret name (lower-case DNS subdomain)"))
		}
		if !validSecretKey(ref.Key) {
			errs = append(errs, field.Invalid(rp.Child("key"), ref.Key, "must be a Secret data key (letters, digits, '-', '_', '.')"))
		}
		if len(errs) > 0 {
			return errs
		}
		if opts.Secrets == nil {
			is.staticErr = fmt.Errorf("secret %s/%s was not resolved (no resolver)", opts.Namespace, ref.Name)
			return nil
		}
		data, err := opts.Secrets(opts.Namespace, ref.Name, ref.Key)
		if err != nil {
			// Absent (or unreadable) is a runtime condition, not a spec
			// error: the issuer fails closed with keys_unavailable.
			is.staticErr = fmt.Errorf("secret %s/%s key %q: %w", opts.Namespace, ref.Name, ref.Key, err)
			return nil
		}
		popts.AllowSymmetric = true
		set, err := keys.ParseStrict(data, popts)
		if err != nil {
			return field.ErrorList{field.Invalid(rp, ref.Name+"/"+ref.Key,
				fmt.Sprintf("the Secret's value is refused: %v; it must be a JWKS document {\"keys\":[...]} of verification keys", err))}
		}
		sum := sha256.Sum256(data)
		_, _ = fingerprint.Write(sum[:])
		is.static = set

	case src.URI != "":
		is.source = "uri"
		if err := checkRemoteURL(src.URI, opts.AllowInsecureHTTP); err != nil {
			return field.ErrorList{field.Invalid(jp.Child("uri"), src.URI, err.Error())}
		}
		if opts.Fetcher != nil {
			r, err := opts.Fetcher.Source(keys.SourceRef{URI: src.URI, Issuer: s.Issuer}, popts)
			if err != nil {
				return field.ErrorList{field.Invalid(jp.Child("uri"), src.URI, err.Error())}
			}
			is.remote = r
		} else {
			is.staticErr = errors.New("remote key sets are not fetched here (no fetcher)")
		}

	default: // discovery
		is.source = "discovery"
		if err := checkRemoteURL(s.Issuer, opts.AllowInsecureHTTP); err != nil {
			return field.ErrorList{field.Invalid(jp.Child("discovery"), true,
				"OIDC discovery reads <issuer>/.well-known/openid-configuration, so issuer must be a URL: "+err.Error())}
		}
		if opts.Fetcher != nil {
			r, err := opts.Fetcher.Source(keys.SourceRef{Issuer: s.Issuer, Discovery: true}, popts)
			if err != nil {
				return field.ErrorList{field.Invalid(jp.Child("discovery"), true, err.Error())}
			}
			is.remote = r
		} else {
			is.staticErr = errors.New("remote key sets are not fetched here (no fetcher)")
		}
	}
	return nil
}

// checkRemoteURL accepts an absolute https URL (http only when allowed)
// with a host, no credentials and no fragment.
func checkRemoteURL(raw string, allowHTTP bool) error {
	if len(raw) > maxURILen {
		return fmt.Errorf("longer than %d characters", maxURILen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	case u.Scheme == "http":
		return errors.New("must use https: keys fetched over plain http could be replaced in transit")
	default:
		return errors.New("must be an https:// URL")
	}
	switch {
	case u.Host == "":
		return errors.New("must name a host")
	case u.User != nil:
		return errors.New("must not hold credentials (user:password@)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("must not hold a fragment (#...)")
	}
	return nil
}

func (p *Policy) compileClaims(specs []authv1alpha1.RequiredClaim, fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(specs) > maxRequiredClaims {
		errs = append(errs, field.TooMany(fp, len(specs), maxRequiredClaims))
	}
	for i := range specs {
		s := &specs[i]
		cp := fp.Index(i)
		c := requiredClaim{op: s.Operator, values: s.Values}
		path, err := compileClaimPath(s.Claim, cp.Child("claim"))
		if err != nil {
			errs = append(errs, err)
		}
		c.path, c.pathText = path, s.Claim
		vp := cp.Child("values")
		switch s.Operator {
		case authv1alpha1.OpExists, authv1alpha1.OpDoesNotExist:
			if len(s.Values) > 0 {
				errs = append(errs, field.Forbidden(vp, "must be empty for operators Exists and DoesNotExist"))
			}
		case authv1alpha1.OpIn, authv1alpha1.OpNotIn, authv1alpha1.OpContainsAny, authv1alpha1.OpContainsAll, authv1alpha1.OpMatches:
			if len(s.Values) == 0 {
				errs = append(errs, field.Required(vp, "list at least one value for operator "+string(s.Operator)))
			}
			if len(s.Values) > maxClaimValues {
				errs = append(errs, field.TooMany(vp, len(s.Values), maxClaimValues))
			}
			for j, v := range s.Values {
				if len(v) > maxValueLen {
					errs = append(errs, field.TooLong(vp.Index(j), "", maxValueLen))
					continue
				}
				if s.Operator == authv1alpha1.OpMatches {
					re, err := regexp.Compile(v)
					if err != nil {
						errs = append(errs, field.Invalid(vp.Index(j), v, "not an RE2 regular expression: "+err.Error()))
						continue
					}
					c.patterns = append(c.patterns, re)
				}
			}
		default:
			errs = append(errs, field.NotSupported(cp.Child("operator"), s.Operator, []string{
				string(authv1alpha1.OpExists), string(authv1alpha1.OpDoesNotExist), string(authv1alpha1.OpIn),
				string(authv1alpha1.OpNotIn), string(authv1alpha1.OpContainsAny), string(authv1alpha1.OpContainsAll),
				string(authv1alpha1.OpMatches)}))
		}
		q := strconv.Quote(s.Claim)
		c.missing = newDenial(ClaimMissing, "required claim "+q+" is missing")
		c.mismatch = newDenial(ClaimMismatch, "required claim "+q+" does not satisfy "+string(s.Operator))
		p.claims = append(p.claims, c)
	}
	return errs
}

func compileClaimPath(s string, fp *field.Path) (ClaimPath, *field.Error) {
	if len(s) > maxClaimPathLen {
		return nil, field.TooLong(fp, "", maxClaimPathLen)
	}
	path, err := ParseClaimPath(s)
	if err != nil {
		return nil, field.Invalid(fp, s, "not a claim path: "+err.Error())
	}
	return path, nil
}

func (p *Policy) compileRules(specs []authv1alpha1.Rule, fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(specs) > maxRules {
		errs = append(errs, field.TooMany(fp, len(specs), maxRules))
	}
	for i := range specs {
		s := &specs[i]
		rp := fp.Index(i)
		if len(s.Message) > maxMessageLen {
			errs = append(errs, field.TooLong(rp.Child("message"), "", maxMessageLen))
		}
		switch {
		case s.Expression == "":
			errs = append(errs, field.Required(rp.Child("expression"), `a CEL expression over "claims" that must be true`))
			continue
		case len(s.Expression) > maxExpressionLen:
			errs = append(errs, field.TooLong(rp.Child("expression"), "", maxExpressionLen))
			continue
		}
		prg, err := compileRule(s.Expression)
		if err != nil {
			errs = append(errs, field.Invalid(rp.Child("expression"), s.Expression, err.Error()))
			continue
		}
		msg := s.Message
		if msg == "" {
			msg = "rule " + strconv.Itoa(i) + " is not satisfied"
		}
		p.rules = append(p.rules, rule{expression: s.Expression, program: prg, failed: newDenial(RuleFailed, msg)})
	}
	return errs
}

func (p *Policy) compileSources(specs []authv1alpha1.TokenSource, fp *field.Path) field.ErrorList {
	if len(specs) == 0 {
		p.sources = []tokenSource{{header: "Authorization", scheme: "Bearer", desc: `header Authorization (scheme "Bearer")`}}
		return nil
	}
	var errs field.ErrorList
	if len(specs) > maxTokenSources {
		errs = append(errs, field.TooMany(fp, len(specs), maxTokenSources))
	}
	for i := range specs {
		s := &specs[i]
		sp := fp.Index(i)
		switch {
		case (s.Header == nil) == (s.Cookie == nil):
			errs = append(errs, field.Invalid(sp, field.OmitValueType{}, "set exactly one of header or cookie"))
		case s.Header != nil:
			hp := sp.Child("header")
			if !validToken(s.Header.Name) || len(s.Header.Name) > maxHeaderNameLen {
				errs = append(errs, field.Invalid(hp.Child("name"), s.Header.Name, "must be an HTTP header name (letters, digits and !#$%&'*+-.^_|~)"))
				continue
			}
			scheme := strings.TrimRight(s.Header.Prefix, " ")
			if strings.Contains(scheme, " ") || (scheme != "" && !validToken(scheme)) || len(s.Header.Prefix) > 64 {
				errs = append(errs, field.Invalid(hp.Child("prefix"), s.Header.Prefix, `must be an authentication scheme with optional trailing spaces, such as "Bearer "`))
				continue
			}
			name := http.CanonicalHeaderKey(s.Header.Name)
			desc := "header " + name
			if scheme != "" {
				desc += fmt.Sprintf(" (scheme %q)", scheme)
			}
			p.sources = append(p.sources, tokenSource{header: name, scheme: scheme, desc: desc})
		default:
			if !validToken(s.Cookie.Name) || len(s.Cookie.Name) > maxHeaderNameLen {
				errs = append(errs, field.Invalid(sp.Child("cookie", "name"), s.Cookie.Name, "must be a cookie name (letters, digits and !#$%&'*+-.^_|~)"))
				continue
			}
			p.sources = append(p.sources, tokenSource{cookie: s.Cookie.Name, desc: "cookie " + s.Cookie.Name})
		}
	}
	return errs
}

// reservedHeaders may not receive claims: hop-by-hop headers, framing and
// credentials, and the headers proxies use to describe the original request.
// Letting a token write into them would let its holder rewrite the request
// the upstream sees (Host, X-Forwarded-For) or smuggle a second one
// (Content-Length, Transfer-Encoding).
var reservedHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Www-Authenticate": true, "Proxy-Authenticate": true,
	"Host": true, "Content-Length": true, "Content-Type": true, "Content-Encoding": true,
	"Transfer-Encoding": true, "Te": true, "Trailer": true, "Upgrade": true, "Connection": true,
	"Keep-Alive": true, "Proxy-Connection": true, "Cookie": true, "Set-Cookie": true, "Expect": true,
	"Forwarded": true, "X-Real-Ip": true, "Location": true, "Date": true,
}

// reservedHeaderPrefixes: every header under these belongs to the proxy or to us.
var reservedHeaderPrefixes = []string{"X-Forwarded-", "X-Original-", "X-Claimguard-"}

func (p *Policy) compileForwards(specs []authv1alpha1.ForwardClaim, fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(specs) > maxForwardClaims {
		errs = append(errs, field.TooMany(fp, len(specs), maxForwardClaims))
	}
	seen := map[string]bool{}
	for i := range specs {
		s := &specs[i]
		ep := fp.Index(i)
		path, perr := compileClaimPath(s.Claim, ep.Child("claim"))
		if perr != nil {
			errs = append(errs, perr)
		}
		hp := ep.Child("header")
		if !validToken(s.Header) || len(s.Header) > maxHeaderNameLen {
			errs = append(errs, field.Invalid(hp, s.Header, "must be an HTTP header name (letters, digits and !#$%&'*+-.^_|~), such as X-Auth-Subject"))
			continue
		}
		name := http.CanonicalHeaderKey(s.Header)
		if reason := p.reservedHeader(name); reason != "" {
			errs = append(errs, field.Invalid(hp, s.Header, reason+"; use a header of your own, such as X-Auth-Subject"))
			continue
		}
		if seen[name] {
			errs = append(errs, field.Duplicate(hp, s.Header))
			continue
		}
		seen[name] = true
		p.forwards = append(p.forwards, forwardClaim{path: path, pathText: s.Claim, header: name})
		p.forwardHeaders = append(p.forwardHeaders, name)
	}
	return errs
}

// reservedHeader says why a canonical header name may not receive a claim.
func (p *Policy) reservedHeader(name string) string {
	if reservedHeaders[name] {
		return name + " is reserved (hop-by-hop, framing, credentials or request routing)"
	}
	for _, pre := range reservedHeaderPrefixes {
		if strings.HasPrefix(name, pre) {
			return pre + "* headers are reserved for the proxy and claimguard"
		}
	}
	for _, s := range p.sources {
		if s.header == name {
			return name + " is a token source of this policy"
		}
	}
	return ""
}

func (p *Policy) compilePublicPaths(paths []string, fp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(paths) > maxPublicPaths {
		errs = append(errs, field.TooMany(fp, len(paths), maxPublicPaths))
	}
	for i, s := range paths {
		pp := fp.Index(i)
		if len(s) > maxPublicPathLen {
			errs = append(errs, field.TooLong(pp, "", maxPublicPathLen))
			continue
		}
		// A pattern must be its own normal form (and hold no '%'), or it
		// could never match a request path, or match in surprising ways.
		if n, ok := NormalizePublicPath(s); !ok || n != s || strings.Contains(s, "%") {
			errs = append(errs, field.Invalid(pp, s, `must start with "/" and hold no "." or ".." segments, "//", "%", "\" or ";"; end it with "/" to match a prefix`))
			continue
		}
		if strings.HasSuffix(s, "/") {
			p.public.prefixes = append(p.public.prefixes, s)
		} else {
			p.public.exact = append(p.public.exact, s)
		}
	}
	return errs
}

// validToken reports whether s is an RFC 9110 token (header names, schemes,
// cookie names).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func validSecretName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validSecretKey(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
