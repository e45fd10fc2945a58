package authztest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"time"
)

// Issuer is a token issuer with an RSA-2048 key (kid "rsa1", RS256), a P-256
// key (kid "ec1", ES256) and a 32-byte HMAC secret (kid "hs1", HS256).
type Issuer struct {
	// URL is the issuer's "iss".
	URL string
	// RSA is the RS256 signing key.
	RSA *rsa.PrivateKey
	// EC is the ES256 signing key.
	EC *ecdsa.PrivateKey
	// HMAC is the HS256 secret.
	HMAC []byte
}

// NewIssuer generates fresh keys for an issuer called url.
func NewIssuer(url string) (*Issuer, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return &Issuer{URL: url, RSA: rk, EC: ek, HMAC: secret}, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// PublicJWKS returns the issuer's public keys (rsa1, ec1) as a JWKS document.
func (i *Issuer) PublicJWKS() string {
	x, y := make([]byte, 32), make([]byte, 32)
	i.EC.X.FillBytes(x)
	i.EC.Y.FillBytes(y)
	return mustJSON(map[string]any{"keys": []map[string]any{
		{"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256",
			"n": b64(i.RSA.N.Bytes()), "e": b64(big.NewInt(int64(i.RSA.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(x), "y": b64(y)},
	}})
}

// SecretJWKS returns the issuer's HMAC secret (hs1) as a JWKS document, the
// value a secretRef names.
func (i *Issuer) SecretJWKS() string {
	return mustJSON(map[string]any{"keys": []map[string]any{
		{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": b64(i.HMAC)},
	}})
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Claims returns the usual claims of a valid token: iss, sub, aud, iat now,
// exp in an hour.
func (i *Issuer) Claims(sub string, now time.Time) map[string]any {
	return map[string]any{
		"iss": i.URL,
		"sub": sub,
		"aud": "orders-api",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// Token signs claims with the key for alg (RS256, ES256 or HS256) and the
// matching kid. It returns an error for any other alg.
func (i *Issuer) Token(alg string, claims map[string]any) (string, error) {
	kid := map[string]string{"RS256": "rsa1", "ES256": "ec1", "HS256": "hs1"}[alg]
	if kid == "" {
		return "", fmt.Errorf("authztest: cannot sign %q", alg)
	}
	return i.TokenWithHeader(map[string]any{"alg": alg, "typ": "JWT", "kid": kid}, claims)
}

// MustToken is Token that panics on error, for table literals in tests.
func (i *Issuer) MustToken(alg string, claims map[string]any) string {
	t, err := i.Token(alg, claims)
	if err != nil {
		panic(err)
	}
	return t
}

// TokenWithHeader signs claims under an arbitrary JOSE header; its "alg"
// chooses the key (RS256, ES256, HS256).
func (i *Issuer) TokenWithHeader(header, claims map[string]any) (string, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64(h) + "." + b64(p)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch header["alg"] {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, i.RSA, crypto.SHA256, digest[:])
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, i.EC, digest[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case "HS256":
		m := hmac.New(sha256.New, i.HMAC)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		return "", fmt.Errorf("authztest: cannot sign %v", header["alg"])
	}
	if err != nil {
		return "", err
	}
	return input + "." + b64(sig), nil
}
