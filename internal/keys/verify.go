package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"math/big"
)

// Sentinel errors of VerifySignature, for errors.Is.
var (
	// ErrSignatureInvalid means the signature does not verify with the key (an empty, truncated
	// or out-of-range signature included).
	ErrSignatureInvalid = errors.New("signature invalid")
	// ErrAlgorithmMismatch means the key cannot serve the algorithm (its own alg differs, or its
	// type does not fit); nothing was verified.
	ErrAlgorithmMismatch = errors.New("algorithm does not fit the key")
	// ErrUnsupportedAlgorithm means the algorithm is not one this package verifies ("none"
	// included).
	ErrUnsupportedAlgorithm = errors.New("unsupported algorithm")
)

// pssOptions follow RFC 7518 section 3.5: the salt is as long as the hash. Refusing other salt
// lengths (rather than rsa.PSSSaltLengthAuto) is what the Wycheproof PSS vectors expect.
var pssOptions = [...]*rsa.PSSOptions{
	crypto.SHA256: {SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256},
	crypto.SHA384: {SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA384},
	crypto.SHA512: {SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA512},
}

// curveOrders holds each curve's group order N as a fixed-size big-endian byte string, to check
// 0 < r, s < N on the raw signature bytes before any big.Int work.
var curveOrders = func() (out [Oct + 1][]byte) {
	for t, c := range map[KeyType]elliptic.Curve{ECP256: elliptic.P256(), ECP384: elliptic.P384(), ECP521: elliptic.P521()} {
		size := (c.Params().BitSize + 7) / 8
		out[t] = c.Params().N.FillBytes(make([]byte, size))
	}
	return out
}()

// VerifySignature checks a JWS signature for alg with key over signingInput (the ASCII
// "<b64 header>.<b64 payload>"); sig is the raw (decoded) signature.
//
// The algorithm is the caller's choice (the policy's allow-list and the key), never the token's
// alone: a key that does not Fit alg returns ErrAlgorithmMismatch before any crypto, so an RSA
// or EC key can never be used as an HMAC secret. ECDSA signatures must be the raw r||s of exactly
// twice the coordinate size with 0 < r, s < N, checked before the library sees them (the
// CVE-2022-21449 class). RSA signatures must be exactly the modulus size. HMAC compares in
// constant time. A bad signature returns ErrSignatureInvalid.
//
// The standard library is called directly after these checks; keys carry everything precomputed
// at parse time, so the cost is the bare crypto plus a few comparisons.
func VerifySignature(alg string, key *Key, signingInput, sig []byte) error {
	info, ok := lookupAlg(alg)
	if !ok {
		return ErrUnsupportedAlgorithm
	}
	if key == nil || (key.Alg != "" && key.Alg != alg) || !key.typeFits(info) {
		return ErrAlgorithmMismatch
	}
	if len(sig) == 0 {
		return ErrSignatureInvalid
	}
	switch info.fam {
	case famRSAPKCS1, famRSAPSS:
		pub, ok := key.Public.(*rsa.PublicKey)
		if !ok {
			return ErrAlgorithmMismatch
		}
		if len(sig) != pub.Size() {
			return ErrSignatureInvalid
		}
		if verifyDigest(info, signingInput, func(digest []byte) bool {
			if info.fam == famRSAPKCS1 {
				return rsa.VerifyPKCS1v15(pub, info.hash, digest, sig) == nil
			}
			return rsa.VerifyPSS(pub, info.hash, digest, sig, pssOptions[info.hash]) == nil
		}) {
			return nil
		}
		return ErrSignatureInvalid
	case famECDSA:
		pub, ok := key.Public.(*ecdsa.PublicKey)
		if !ok {
			return ErrAlgorithmMismatch
		}
		order := curveOrders[key.Type]
		size := len(order)
		if len(sig) != 2*size {
			return ErrSignatureInvalid
		}
		rb, sb := sig[:size], sig[size:]
		if !inRange(rb, order) || !inRange(sb, order) {
			return ErrSignatureInvalid
		}
		r, s := new(big.Int).SetBytes(rb), new(big.Int).SetBytes(sb)
		if verifyDigest(info, signingInput, func(digest []byte) bool { return ecdsa.Verify(pub, digest, r, s) }) {
			return nil
		}
		return ErrSignatureInvalid
	case famEdDSA:
		pub, ok := key.Public.(ed25519.PublicKey)
		if !ok {
			return ErrAlgorithmMismatch
		}
		// ed25519.Verify refuses a signature that is not 64 bytes and a non-canonical s.
		if !ed25519.Verify(pub, signingInput, sig) {
			return ErrSignatureInvalid
		}
		return nil
	case famHMAC:
		secret, ok := key.Public.([]byte)
		if !ok {
			return ErrAlgorithmMismatch
		}
		if len(sig) != info.hash.Size() || !hmacEqual(key, secret, info, signingInput, sig) {
			return ErrSignatureInvalid
		}
		return nil
	}
	return ErrUnsupportedAlgorithm
}

// hmacEqual computes the MAC with a pooled keyed state when the key has one (parsed keys do) and
// compares it with sig in constant time.
func hmacEqual(key *Key, secret []byte, info algInfo, signingInput, sig []byte) bool {
	if key.hmacPools == nil {
		mac := hmac.New(hashConstructor(info.hash), secret)
		mac.Write(signingInput)
		return hmac.Equal(mac.Sum(nil), sig)
	}
	pool := &key.hmacPools[info.slot]
	st := pool.Get().(*hmacState)
	st.mac.Reset()
	st.mac.Write(signingInput)
	ok := hmac.Equal(st.mac.Sum(st.out[:0]), sig)
	pool.Put(st)
	return ok
}

// hmacState is a pooled keyed MAC with its own output buffer, so a verification allocates
// nothing.
type hmacState struct {
	mac hash.Hash
	out [sha512.Size]byte
}

// inRange reports whether the fixed-size big-endian integer v satisfies 0 < v < order. Both
// slices have the same length, so bytes.Compare is a numeric comparison.
func inRange(v, order []byte) bool {
	zero := true
	for _, c := range v {
		if c != 0 {
			zero = false
			break
		}
	}
	return !zero && bytes.Compare(v, order) < 0
}

// verifyDigest hashes data with the algorithm's hash into a stack array and hands it to check.
func verifyDigest(info algInfo, data []byte, check func(digest []byte) bool) bool {
	switch info.hash {
	case crypto.SHA256:
		d := sha256.Sum256(data)
		return check(d[:])
	case crypto.SHA384:
		d := sha512.Sum384(data)
		return check(d[:])
	default:
		d := sha512.Sum512(data)
		return check(d[:])
	}
}

func hashConstructor(h crypto.Hash) func() hash.Hash {
	switch h {
	case crypto.SHA256:
		return sha256.New
	case crypto.SHA384:
		return sha512.New384
	default:
		return sha512.New
	}
}
