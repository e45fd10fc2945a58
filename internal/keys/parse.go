package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// ParseOptions says what a set may contain.
type ParseOptions struct {
	// Algorithms is the issuer's allow-list. A key whose own alg is outside it, or that has no
	// alg and whose type fits none of it, is refused (strict) or skipped (lenient). Empty means
	// the API default, RS256 and ES256.
	Algorithms []string
	// AllowSymmetric allows oct (HMAC secret) keys. Only secretRef and --secret-dir sources set
	// it: an HMAC secret in an inline or remote set would be readable by others.
	AllowSymmetric bool
}

// defaultAlgorithms mirrors the API default of JWTPolicy issuers.
var defaultAlgorithms = []string{"RS256", "ES256"}

func (o ParseOptions) algorithms() []string {
	if len(o.Algorithms) == 0 {
		return defaultAlgorithms
	}
	return o.Algorithms
}

// Skipped is a key of a remote set that ParseLenient left out, and why.
type Skipped struct {
	// Index is the key's position in the document's "keys" array.
	Index int
	// KID is the key's kid ("" when it has none or it is not a string).
	KID string
	// Reason says why, in one line without key material.
	Reason string
}

// String renders the skip like a KeyError: keys[2] (kid "a1"): reason.
func (s Skipped) String() string {
	return keyPrefix(s.Index, s.KID) + s.Reason
}

// KeyError is the error ParseStrict returns for a refused key. Its text names the key and the
// reason on one line, e.g. `keys[2] (kid "a1"): RSA key is 1024 bits, at least 2048 are
// required`, and is fit to become a field error message.
type KeyError struct {
	// Index is the key's position in the document's "keys" array.
	Index int
	// KID is the key's kid ("" when it has none or it is not a string).
	KID string
	// Reason says why the key is refused, without key material.
	Reason string
}

// Error implements error.
func (e *KeyError) Error() string {
	return keyPrefix(e.Index, e.KID) + e.Reason
}

func keyPrefix(i int, kid string) string {
	if kid == "" {
		return fmt.Sprintf("keys[%d]: ", i)
	}
	return fmt.Sprintf("keys[%d] (kid %s): ", i, quote(kid))
}

// ErrNotJWKS is wrapped by the parse error of a document that is not a JWKS at all.
var ErrNotJWKS = errors.New("not a JWKS")

// maxQuoted bounds strings from documents echoed in messages: a remote set is
// attacker-influenced, and its skip reasons end up in status and logs.
const maxQuoted = 64

// quote renders a document-supplied string for a message: quoted, escaped, and truncated.
func quote(s string) string {
	if len(s) > maxQuoted {
		s = strings.ToValidUTF8(s[:maxQuoted], "") + "..."
	}
	return strconv.Quote(s)
}

// ParseStrict is for inline and Secret sets: any bad key refuses the whole set with an error
// that names the key (index and kid) and the reason (private material, RSA < 2048 bits or >
// 8192, exponent even or < 65537, ROCA modulus, EC point not on curve, oct shorter than 32 bytes
// or its alg's hash, duplicate kid, use != "sig", key_ops without "verify", unparseable JWK, alg
// not allowed or unsupported, oct when !AllowSymmetric, oct and public keys in one set). A set
// without any key is refused too: the issuer could verify nothing.
func ParseStrict(data []byte, opts ParseOptions) (*Set, error) {
	elems, err := splitJWKS(data)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, errors.New(`the key set holds no keys ("keys" is empty)`)
	}
	p := newParser(opts)
	out := make([]*Key, 0, len(elems))
	for i, raw := range elems {
		k, kid, reason := p.parse(i, raw)
		if reason != "" {
			return nil, &KeyError{Index: i, KID: kid, Reason: reason}
		}
		out = append(out, k)
	}
	return &Set{keys: out, byKID: p.byKID, kids: p.kids}, nil
}

// ParseLenient is for remote sets: keys that ParseStrict would refuse are skipped and reported,
// the rest are kept (of duplicate kids, the first). A document that is not a JWKS at all is an
// error wrapping ErrNotJWKS. A JWKS whose keys are all skipped yields an empty set, not an error.
func ParseLenient(data []byte, opts ParseOptions) (*Set, []Skipped, error) {
	elems, err := splitJWKS(data)
	if err != nil {
		return nil, nil, err
	}
	p := newParser(opts)
	out := make([]*Key, 0, len(elems))
	var skipped []Skipped
	for i, raw := range elems {
		k, kid, reason := p.parse(i, raw)
		if reason != "" {
			skipped = append(skipped, Skipped{Index: i, KID: kid, Reason: reason})
			continue
		}
		out = append(out, k)
	}
	return &Set{keys: out, byKID: p.byKID, kids: p.kids}, skipped, nil
}

// splitJWKS checks the document shape and returns the raw elements of "keys".
func splitJWKS(data []byte) ([]json.RawMessage, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: the document is empty", ErrNotJWKS)
	}
	if trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: the document is not a JSON object", ErrNotJWKS)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON: %s", ErrNotJWKS, oneLine(err.Error()))
	}
	rawKeys, ok := doc["keys"]
	if !ok {
		if _, isJWK := doc["kty"]; isJWK {
			return nil, fmt.Errorf(`%w: the document is a single JWK; wrap it as {"keys":[...]}`, ErrNotJWKS)
		}
		return nil, fmt.Errorf(`%w: the document has no "keys" member`, ErrNotJWKS)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(rawKeys, &elems); err != nil || elems == nil {
		return nil, fmt.Errorf(`%w: "keys" is not an array`, ErrNotJWKS)
	}
	return elems, nil
}

// oneLine keeps messages on one line and bounded, for status fields and field errors.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return s
}

// parser carries the state that spans keys: the kid index and the kind of the set.
type parser struct {
	allowed        []string
	allowSymmetric bool
	byKID          map[string]*Key
	kids           []string
	kidIndex       map[string]int
	// symmetric is the kind of the first accepted key (nil before any): a set never mixes HMAC
	// secrets with public keys, the ground of algorithm-confusion attacks (Wycheproof flags
	// such sets as ambiguous and expects them refused).
	symmetric *bool
}

func newParser(opts ParseOptions) *parser {
	return &parser{
		allowed:        opts.algorithms(),
		allowSymmetric: opts.AllowSymmetric,
		byKID:          map[string]*Key{},
		kidIndex:       map[string]int{},
	}
}

func (p *parser) isAllowed(alg string) bool {
	for _, a := range p.allowed {
		if a == alg {
			return true
		}
	}
	return false
}

// privateMembers are the JWK members that carry private key material (RFC 7518 section 6).
var privateMembers = map[string][]string{
	"RSA": {"d", "p", "q", "dp", "dq", "qi", "oth"},
	"EC":  {"d"},
	"OKP": {"d"},
}

// parse checks one element of "keys" and returns the key, or its kid and the reason it is
// refused. The checks on the raw members come first so the reason is the user's mistake, not a
// downstream parse error.
func (p *parser) parse(index int, raw json.RawMessage) (_ *Key, kid string, reason string) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, "", "is not a JSON object"
	}
	if v, ok := m["kid"]; ok {
		if err := json.Unmarshal(v, &kid); err != nil {
			return nil, "", "kid is not a string"
		}
	}
	var kty string
	if v, ok := m["kty"]; !ok {
		return nil, kid, "has no kty"
	} else if err := json.Unmarshal(v, &kty); err != nil {
		return nil, kid, "kty is not a string"
	}
	switch kty {
	case "RSA", "EC", "OKP":
		for _, name := range privateMembers[kty] {
			if _, ok := m[name]; ok {
				return nil, kid, fmt.Sprintf("holds private key material (%q); publish only the public key", name)
			}
		}
	case "oct":
		if !p.allowSymmetric {
			return nil, kid, "oct (HMAC secret) keys are accepted only from a secretRef"
		}
	default:
		return nil, kid, fmt.Sprintf("kty %s is not supported (RSA, EC, OKP, oct)", quote(kty))
	}
	if v, ok := m["use"]; ok {
		var use string
		if err := json.Unmarshal(v, &use); err != nil {
			return nil, kid, "use is not a string"
		}
		if use != "sig" {
			return nil, kid, fmt.Sprintf(`use is %s; only "sig" keys verify signatures`, quote(use))
		}
	}
	if v, ok := m["key_ops"]; ok {
		var ops []string
		if err := json.Unmarshal(v, &ops); err != nil {
			return nil, kid, "key_ops is not an array of strings"
		}
		if !contains(ops, "verify") {
			return nil, kid, `key_ops lacks "verify"`
		}
	}
	var alg string
	if v, ok := m["alg"]; ok {
		if err := json.Unmarshal(v, &alg); err != nil {
			return nil, kid, "alg is not a string"
		}
		switch {
		case strings.EqualFold(alg, "none"):
			return nil, kid, `alg "none" is never accepted`
		case !IsSupportedAlgorithm(alg):
			return nil, kid, fmt.Sprintf("alg %s is not a supported JWS signature algorithm (%s)", quote(alg), strings.Join(Algorithms, ", "))
		case !p.isAllowed(alg):
			return nil, kid, fmt.Sprintf("alg %s is not in the issuer's algorithms (%s)", alg, strings.Join(p.allowed, ", "))
		}
	}

	jk, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, kid, "is not a valid JWK: " + oneLine(err.Error())
	}
	public, reason := publicFromJWK(jk)
	if reason != "" {
		return nil, kid, reason
	}
	k, reason := newCheckedKey(kid, alg, public)
	if reason != "" {
		return nil, kid, reason
	}
	if alg == "" {
		fits := k.FittingAlgorithms()
		if !p.anyAllowed(fits) {
			return nil, kid, fmt.Sprintf("an %s key without alg serves %s, none of which the issuer allows (%s)",
				k.Type, strings.Join(fits, ", "), strings.Join(p.allowed, ", "))
		}
	}
	isSym := k.Type == Oct
	if p.symmetric != nil && *p.symmetric != isSym {
		return nil, kid, "an oct (HMAC secret) key and public keys cannot share one key set"
	}
	if kid != "" {
		if first, dup := p.kidIndex[kid]; dup {
			return nil, kid, fmt.Sprintf("duplicate kid, keys[%d] has it too", first)
		}
		p.kidIndex[kid] = index
		p.byKID[kid] = k
		p.kids = append(p.kids, kid)
	}
	if p.symmetric == nil {
		p.symmetric = &isSym
	}
	return k, kid, ""
}

func (p *parser) anyAllowed(algs []string) bool {
	for _, a := range algs {
		if p.isAllowed(a) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// curveByName maps JWK crv names to curves with their coordinate sizes (RFC 7518 section 6.2.1:
// x and y are the full coordinate size, no shorter).
var curveByName = map[string]struct {
	curve elliptic.Curve
	size  int
}{
	"P-256": {elliptic.P256(), 32},
	"P-384": {elliptic.P384(), 48},
	"P-521": {elliptic.P521(), 66},
}

// publicFromJWK extracts the public key (or the oct secret) from a parsed public JWK. Private
// JWKs never get here: their members were refused before.
func publicFromJWK(jk jwk.Key) (any, string) {
	switch k := jk.(type) {
	case jwk.RSAPublicKey:
		n, e := k.N(), k.E()
		if len(n) == 0 {
			return nil, "RSA key has no modulus (n)"
		}
		e = bytes.TrimLeft(e, "\x00")
		if len(e) == 0 {
			return nil, "RSA key has no exponent (e), or it is zero"
		}
		if len(e) > 4 {
			return nil, "RSA exponent is larger than 32 bits"
		}
		var ev uint64
		for _, c := range e {
			ev = ev<<8 | uint64(c)
		}
		if ev > 1<<31-1 {
			return nil, "RSA exponent is larger than 2^31-1"
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ev)}, ""
	case jwk.ECDSAPublicKey:
		crv := k.Crv().String()
		c, ok := curveByName[crv]
		if !ok {
			return nil, fmt.Sprintf("EC curve %s is not supported (P-256, P-384, P-521)", quote(crv))
		}
		x, y := k.X(), k.Y()
		if len(x) != c.size || len(y) != c.size {
			return nil, fmt.Sprintf("EC coordinates must be %d bytes each for %s", c.size, crv)
		}
		point := make([]byte, 0, 1+2*c.size)
		point = append(append(append(point, 4), x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c.curve, point)
		if err != nil {
			return nil, fmt.Sprintf("EC point is not on curve %s", crv)
		}
		return pub, ""
	case jwk.OKPPublicKey:
		crv := k.Crv().String()
		switch crv {
		case "Ed25519":
		case "X25519", "X448":
			return nil, fmt.Sprintf("OKP curve %s is for key agreement, not signatures", crv)
		default:
			return nil, fmt.Sprintf("OKP curve %s is not supported (Ed25519)", quote(crv))
		}
		x := k.X()
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Sprintf("Ed25519 key is %d bytes, it must be %d", len(x), ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(bytes.Clone(x)), ""
	case jwk.SymmetricKey:
		return bytes.Clone(k.Octets()), ""
	}
	return nil, fmt.Sprintf("unsupported JWK type %T", jk)
}

// checkRSA applies the RSA refusals: size, exponent, and the ROCA fingerprint.
func checkRSA(pub *rsa.PublicKey) string {
	bits := pub.N.BitLen()
	switch {
	case bits < 2048:
		return fmt.Sprintf("RSA key is %d bits, at least 2048 are required", bits)
	case bits > 8192:
		// Verification cost grows with the square of the size; no issuer needs more.
		return fmt.Sprintf("RSA key is %d bits, at most 8192 are supported", bits)
	case pub.N.Bit(0) == 0:
		return "RSA modulus is even"
	case pub.E%2 == 0:
		return fmt.Sprintf("RSA exponent %d is even", pub.E)
	case pub.E < 65537:
		return fmt.Sprintf("RSA exponent %d is below 65537", pub.E)
	case hasROCAFingerprint(pub.N):
		return "RSA modulus has the ROCA fingerprint (CVE-2017-15361), its private key can be recovered"
	}
	return ""
}
