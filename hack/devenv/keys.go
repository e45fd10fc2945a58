package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// devIssuer and devAudience are the issuer and audience of the dev policy's tokens.
const (
	devIssuer   = "https://dev-idp.claimguard.local"
	devAudience = "orders-api"
)

// loadOrCreateKey returns the dev signing key (ES256) kept in path, creating it on first
// use. Keeping it means a token minted by an earlier run still verifies, and the policy's
// inline key stays the same across runs. The file holds a private key: mode 0600, and the
// key is for this machine's dev environment only.
func loadOrCreateKey(path string) (jwk.Key, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := jwk.ParseKey(data)
		if err != nil {
			return nil, fmt.Errorf("read dev key %s (delete it to make a new one): %w", path, err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	if err := jwk.AssignKeyID(key); err != nil {
		return nil, err
	}
	for k, v := range map[string]any{jwk.AlgorithmKey: jwa.ES256, jwk.KeyUsageKey: "sig"} {
		if err := key.Set(k, v); err != nil {
			return nil, err
		}
	}
	data, err = json.Marshal(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return key, os.WriteFile(path, data, 0o600)
}

// publicJWKS is the JSON key set of key's public half, for the policy's jwks.inline.
func publicJWKS(key jwk.Key) (string, error) {
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return "", err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return "", err
	}
	data, err := json.Marshal(set)
	return string(data), err
}

// devToken is one token the dev environment mints, and the answer it gets.
type devToken struct {
	// file is the token's file name under <dir>/tokens.
	file string
	// what describes the answer for the printed instructions.
	what string
	// status and reason are the answer of the forward-auth endpoint.
	status int
	reason string
	claims func(now time.Time) map[string]any
}

// devTokens are the three tokens whose curl commands make dev prints.
var devTokens = []devToken{
	{
		file: "allowed.jwt", what: "allowed: 200 with the claims as headers", status: 200,
		claims: func(now time.Time) map[string]any {
			return baseClaims(now, now.Add(12*time.Hour), "orders:read orders:write")
		},
	},
	{
		file: "expired.jwt", what: "an expired token: 401", status: 401, reason: "token_expired",
		claims: func(now time.Time) map[string]any {
			c := baseClaims(now.Add(-2*time.Hour), now.Add(-time.Hour), "orders:read")
			return c
		},
	},
	{
		file: "forbidden.jwt", what: "a valid token without the scope orders:read: 403", status: 403, reason: "claim_mismatch",
		claims: func(now time.Time) map[string]any {
			return baseClaims(now, now.Add(12*time.Hour), "profile email")
		},
	},
}

func baseClaims(iat, exp time.Time, scope string) map[string]any {
	return map[string]any{
		jwt.IssuerKey:     devIssuer,
		jwt.SubjectKey:    "alice",
		jwt.AudienceKey:   []string{devAudience},
		jwt.IssuedAtKey:   iat.Unix(),
		jwt.ExpirationKey: exp.Unix(),
		"email":           "alice@example.com",
		"roles":           []string{"admin", "ops"},
		"scope":           scope,
	}
}

// mintTokens signs every dev token with key and writes it to dir (mode 0600: a token is a
// credential, even a dev one).
func mintTokens(key jwk.Key, dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, dt := range devTokens {
		tok := jwt.New()
		for k, v := range dt.claims(now) {
			if err := tok.Set(k, v); err != nil {
				return fmt.Errorf("token %s: claim %s: %w", dt.file, k, err)
			}
		}
		signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, key))
		if err != nil {
			return fmt.Errorf("sign token %s: %w", dt.file, err)
		}
		if err := os.WriteFile(filepath.Join(dir, dt.file), signed, 0o600); err != nil {
			return err
		}
	}
	return nil
}
