package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"sync"
)

// KeyType is the kind of a verification key: its JWK "kty" and, for elliptic curves, the curve.
type KeyType uint8

// The key types claimguard verifies with. The zero value is not a valid type.
const (
	// RSA is an RSA public key (JWK kty "RSA"), usable with RS* and PS*.
	RSA KeyType = iota + 1
	// ECP256 is an ECDSA public key on P-256, usable with ES256 only.
	ECP256
	// ECP384 is an ECDSA public key on P-384, usable with ES384 only.
	ECP384
	// ECP521 is an ECDSA public key on P-521, usable with ES512 only.
	ECP521
	// Ed25519 is an Ed25519 public key (JWK kty "OKP", crv "Ed25519"), usable with EdDSA.
	Ed25519
	// Oct is an HMAC secret (JWK kty "oct"), usable with HS*; it only ever comes from a secretRef.
	Oct
)

// String returns the human name used in messages ("RSA", "EC P-256", "Ed25519", "oct").
func (t KeyType) String() string {
	switch t {
	case RSA:
		return "RSA"
	case ECP256:
		return "EC P-256"
	case ECP384:
		return "EC P-384"
	case ECP521:
		return "EC P-521"
	case Ed25519:
		return "Ed25519"
	case Oct:
		return "oct"
	default:
		return fmt.Sprintf("KeyType(%d)", uint8(t))
	}
}

// family groups the algorithms that share a verification primitive.
type family uint8

const (
	famRSAPKCS1 family = iota + 1
	famRSAPSS
	famECDSA
	famEdDSA
	famHMAC
)

// algInfo describes one supported JWS algorithm (RFC 7518 section 3, RFC 8037).
type algInfo struct {
	fam   family
	hash  crypto.Hash // zero for EdDSA, which hashes internally
	curve KeyType     // the only key type an ECDSA algorithm fits
	slot  int         // index into Key.hmacPools for HMAC
}

// Algorithms lists every JWS algorithm this package verifies, in a stable order.
var Algorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
	"HS256", "HS384", "HS512",
}

// lookupAlg is a string switch rather than a map so the hot path costs a few compares and no
// hashing. "none" and every unknown name return ok=false.
func lookupAlg(alg string) (algInfo, bool) {
	switch alg {
	case "RS256":
		return algInfo{fam: famRSAPKCS1, hash: crypto.SHA256}, true
	case "RS384":
		return algInfo{fam: famRSAPKCS1, hash: crypto.SHA384}, true
	case "RS512":
		return algInfo{fam: famRSAPKCS1, hash: crypto.SHA512}, true
	case "PS256":
		return algInfo{fam: famRSAPSS, hash: crypto.SHA256}, true
	case "PS384":
		return algInfo{fam: famRSAPSS, hash: crypto.SHA384}, true
	case "PS512":
		return algInfo{fam: famRSAPSS, hash: crypto.SHA512}, true
	case "ES256":
		return algInfo{fam: famECDSA, hash: crypto.SHA256, curve: ECP256}, true
	case "ES384":
		return algInfo{fam: famECDSA, hash: crypto.SHA384, curve: ECP384}, true
	case "ES512":
		return algInfo{fam: famECDSA, hash: crypto.SHA512, curve: ECP521}, true
	case "EdDSA":
		return algInfo{fam: famEdDSA}, true
	case "HS256":
		return algInfo{fam: famHMAC, hash: crypto.SHA256, slot: 0}, true
	case "HS384":
		return algInfo{fam: famHMAC, hash: crypto.SHA384, slot: 1}, true
	case "HS512":
		return algInfo{fam: famHMAC, hash: crypto.SHA512, slot: 2}, true
	}
	return algInfo{}, false
}

// IsSupportedAlgorithm reports whether alg is a JWS algorithm this package can verify. "none" is not.
func IsSupportedAlgorithm(alg string) bool {
	_, ok := lookupAlg(alg)
	return ok
}

// Key is one verification key, checked and ready.
//
// Keys built by ParseStrict, ParseLenient or NewKey have passed every check of the package
// (size, exponent, curve point, private material, alg binding) and carry precomputed state for
// VerifySignature. A Key must not be modified after construction: Sets share them between
// goroutines.
type Key struct {
	// KID is the JWK "kid", "" when the JWK has none.
	KID string
	// Alg is the JWK's own "alg", which binds the key to that one algorithm; "" when absent.
	Alg string
	// Type is the key's kind (RSA, ECP256, ECP384, ECP521, Ed25519, Oct).
	Type KeyType
	// Public is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, or []byte (an oct secret).
	Public any

	// hmacPools holds keyed HMAC states per hash (HS256, HS384, HS512) for oct keys, so the hot
	// path reuses them instead of re-deriving the inner and outer pads on every call.
	hmacPools *[3]sync.Pool
}

// Fits reports whether the key can serve alg: its own Alg if set, else its type (RSA: RS*/PS*;
// P-256: ES256; P-384: ES384; P-521: ES512; Ed25519: EdDSA; oct: HS* whose hash is no longer
// than the secret).
func (k *Key) Fits(alg string) bool {
	if k == nil {
		return false
	}
	if k.Alg != "" && alg != k.Alg {
		return false
	}
	info, ok := lookupAlg(alg)
	if !ok {
		return false
	}
	return k.typeFits(info)
}

// typeFits checks the key's type against an algorithm. It also guards Keys whose Alg was set
// by hand to something the type cannot serve.
func (k *Key) typeFits(info algInfo) bool {
	switch info.fam {
	case famRSAPKCS1, famRSAPSS:
		return k.Type == RSA
	case famECDSA:
		return k.Type == info.curve
	case famEdDSA:
		return k.Type == Ed25519
	case famHMAC:
		// RFC 7518 section 3.2: the secret must be at least as long as the hash output.
		secret, ok := k.Public.([]byte)
		return k.Type == Oct && ok && len(secret) >= info.hash.Size()
	}
	return false
}

// FittingAlgorithms returns the algorithms the key can serve, in the order of Algorithms.
func (k *Key) FittingAlgorithms() []string {
	var out []string
	for _, alg := range Algorithms {
		if k.Fits(alg) {
			out = append(out, alg)
		}
	}
	return out
}

// NewKey builds a Key from a public key (or an HMAC secret as []byte) with the same checks as
// ParseStrict applies to a JWK: RSA of 2048 to 8192 bits with an odd exponent of at least 65537
// and no ROCA fingerprint, P-256/P-384/P-521 points on their curve, Ed25519, oct of at least 32
// bytes and of the hash size of alg. alg may be "" (the key then serves every algorithm its type
// fits). It exists for callers that hold keys outside JWKS documents, such as tests.
func NewKey(kid, alg string, public any) (*Key, error) {
	k, reason := newCheckedKey(kid, alg, public)
	if reason != "" {
		return nil, fmt.Errorf("%s", reason)
	}
	return k, nil
}

// newCheckedKey returns the key or the reason it is refused (never containing key material).
func newCheckedKey(kid, alg string, public any) (*Key, string) {
	k := &Key{KID: kid, Alg: alg, Public: public}
	switch pub := public.(type) {
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return nil, "RSA key has no modulus"
		}
		if reason := checkRSA(pub); reason != "" {
			return nil, reason
		}
		k.Type = RSA
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return nil, "EC key has no curve"
		}
		switch pub.Curve {
		case elliptic.P256():
			k.Type = ECP256
		case elliptic.P384():
			k.Type = ECP384
		case elliptic.P521():
			k.Type = ECP521
		default:
			return nil, fmt.Sprintf("EC curve %s is not supported (P-256, P-384, P-521)", pub.Curve.Params().Name)
		}
		// Re-encode and re-parse: ParseUncompressedPublicKey refuses points off the curve and the
		// point at infinity, whatever produced the big.Ints.
		raw, err := pub.Bytes()
		if err != nil {
			return nil, fmt.Sprintf("EC point is not on curve %s", pub.Curve.Params().Name)
		}
		checked, err := ecdsa.ParseUncompressedPublicKey(pub.Curve, raw)
		if err != nil {
			return nil, fmt.Sprintf("EC point is not on curve %s", pub.Curve.Params().Name)
		}
		k.Public = checked
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Sprintf("Ed25519 key is %d bytes, it must be %d", len(pub), ed25519.PublicKeySize)
		}
		k.Type = Ed25519
	case []byte:
		if len(pub) < minOctBytes {
			return nil, fmt.Sprintf("oct key is %d bytes, at least %d are required", len(pub), minOctBytes)
		}
		k.Type = Oct
		k.Public = append([]byte(nil), pub...)
		k.hmacPools = newHMACPools(k.Public.([]byte))
	default:
		return nil, fmt.Sprintf("unsupported key type %T", public)
	}
	if alg != "" {
		info, ok := lookupAlg(alg)
		if !ok {
			return nil, fmt.Sprintf("alg %s is not a supported JWS signature algorithm", quote(alg))
		}
		if !k.typeFits(info) {
			if k.Type == Oct {
				return nil, fmt.Sprintf("oct key is %d bytes, %s requires at least %d", len(k.Public.([]byte)), alg, info.hash.Size())
			}
			return nil, fmt.Sprintf("alg %s does not fit an %s key", alg, k.Type)
		}
	}
	return k, ""
}

const minOctBytes = 32

// newHMACPools prepares one pool of keyed HMAC states per hash. hmac.New copies the secret into
// the pads, so the pools hold no reference to the caller's slice.
func newHMACPools(secret []byte) *[3]sync.Pool {
	pools := new([3]sync.Pool)
	news := [3]func() hash.Hash{sha256.New, sha512.New384, sha512.New}
	for i := range pools {
		h := news[i]
		pools[i].New = func() any { return &hmacState{mac: hmac.New(h, secret)} }
	}
	return pools
}
