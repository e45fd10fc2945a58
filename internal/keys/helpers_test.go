package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"sync"
	"testing"
)

// Keys are generated once per test binary: RSA generation dominates the package's test time.
var (
	testRSA     = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA2    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	testRSA1024 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
	testP256    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	testP384    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	testP521    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P521()) })
	testEd      = sync.OnceValue(func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
	testSecret = sync.OnceValue(func() []byte {
		b := make([]byte, 64)
		if _, err := rand.Read(b); err != nil {
			panic(err)
		}
		return b
	})
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf returns the public JWK of a key (the secret itself for []byte) as a member map that
// tests modify before marshalling.
func jwkOf(t testing.TB, pub any) map[string]any {
	t.Helper()
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]any{"kty": "RSA", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		return map[string]any{"kty": "EC", "crv": k.Curve.Params().Name, "x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:])}
	case ed25519.PublicKey:
		return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64(k)}
	case []byte:
		return map[string]any{"kty": "oct", "k": b64(k)}
	}
	t.Fatalf("jwkOf: unsupported %T", pub)
	return nil
}

// with returns a copy of m with the given members set; a nil value deletes the member.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m)+len(kv)/2)
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// jwks marshals a JWKS document from member maps or raw JSON values.
func jwks(t testing.TB, keys ...any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign produces a raw JWS signature of input for alg with a test private key.
func sign(t testing.TB, alg string, priv any, input []byte) []byte {
	t.Helper()
	info, ok := lookupAlg(alg)
	if !ok {
		t.Fatalf("sign: unknown alg %s", alg)
	}
	var digest []byte
	if info.hash != 0 {
		h := info.hash.New()
		h.Write(input)
		digest = h.Sum(nil)
	}
	switch info.fam {
	case famRSAPKCS1:
		sig, err := rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), info.hash, digest)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case famRSAPSS:
		sig, err := rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), info.hash, digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case famECDSA:
		k := priv.(*ecdsa.PrivateKey)
		r, s, err := ecdsa.Sign(rand.Reader, k, digest)
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	case famEdDSA:
		return ed25519.Sign(priv.(ed25519.PrivateKey), input)
	case famHMAC:
		mac := hmac.New(info.hash.New, priv.([]byte))
		mac.Write(input)
		return mac.Sum(nil)
	}
	t.Fatalf("sign: unsupported %s", alg)
	return nil
}

// mustKey builds a checked Key or fails the test.
func mustKey(t testing.TB, kid, alg string, pub any) *Key {
	t.Helper()
	k, err := NewKey(kid, alg, pub)
	if err != nil {
		t.Fatalf("NewKey(%q, %q): %v", kid, alg, err)
	}
	return k
}

// privFor returns the private key (or secret) matching an algorithm's family in the test keys.
func privFor(alg string) any {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		return testRSA()
	case "ES256":
		return testP256()
	case "ES384":
		return testP384()
	case "ES512":
		return testP521()
	case "EdDSA":
		return testEd()
	default:
		return testSecret()
	}
}

func publicOf(priv any) any {
	switch k := priv.(type) {
	case []byte:
		return k
	case crypto.Signer:
		return k.Public()
	}
	panic("publicOf: unsupported key")
}
