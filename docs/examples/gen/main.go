// Command gen mints the EXAMPLE keys and tokens that the claimguard
// documentation runs `claimguard explain` and `curl` against.
//
//	go run ./docs/examples/gen            # from the repository root
//
// Keys are created once and then kept: gen reads them back on every run, so
// docs/examples/policies.yaml (which embeds the public keys) stays valid when
// the tokens are regenerated. Every claim and time in the tokens is fixed, so
// their headers and payloads are the same on every run; only the ES256
// signatures differ (ECDSA signs with a random nonce), which changes no
// explain output because a P-256 signature always has 64 bytes.
//
// The keys are published on purpose and protect nothing. Never trust them,
// or tokens signed with them, anywhere.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
)

// Fixed times (Unix seconds). Valid tokens live until 2100 so the examples
// keep their outcome for the life of the project.
const (
	iat2025 = 1735689600 // 2025-01-01T00:00:00Z
	exp2100 = 4102444800 // 2100-01-01T00:00:00Z
	iat2024 = 1704067200 // 2024-01-01T00:00:00Z
	exp2024 = 1704070800 // 2024-01-01T01:00:00Z
	nbf2099 = 4070908800 // 2099-01-01T00:00:00Z
)

// Key ids of the example keys. example-es256-2 is the "next" key of a
// rotation: tokens carry it, the policy file does not.
const (
	kidES256     = "example-es256-1"
	kidES256Next = "example-es256-2"
	kidRS256     = "example-rs256-1"
	kidHS256     = "example-hs256-1"
)

const (
	shopIssuer    = "https://idp.example.com/realms/shop"
	legacyIssuer  = "https://legacy.example.com"
	billingIssuer = "billing-token-service"
)

// warning is written into every private key file, beside the key.
const warning = "EXAMPLE KEY for the claimguard docs, published on purpose. It protects nothing: never trust it or tokens signed with it."

func main() {
	dir := flag.String("dir", "docs/examples", "the examples directory: keys/ and secrets/ are read (created when absent), tokens/ is written")
	flag.Parse()
	if err := run(*dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// keySet is the example key material.
type keySet struct {
	es256     *ecdsa.PrivateKey
	es256Next *ecdsa.PrivateKey // throwaway: only its kid matters
	rs256     *rsa.PrivateKey
	hmac      []byte
}

func run(dir string) error {
	ks, err := loadKeys(dir)
	if err != nil {
		return err
	}
	if err := writePublicJWKS(dir, ks); err != nil {
		return err
	}
	tokDir := filepath.Join(dir, "tokens")
	if err := os.MkdirAll(tokDir, 0o755); err != nil {
		return err
	}
	for _, t := range tokens(ks) {
		if err := os.WriteFile(filepath.Join(tokDir, t.file), []byte(t.value+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s/%s (%d bytes)\n", tokDir, t.file, len(t.value))
	}
	return nil
}

// ---- keys ------------------------------------------------------------------

// jwk holds the members of the JWKs gen reads and writes.
type jwk struct {
	Warning string `json:"_warning,omitempty"`
	Kty     string `json:"kty"`
	Crv     string `json:"crv,omitempty"`
	Kid     string `json:"kid"`
	Use     string `json:"use"`
	Alg     string `json:"alg"`
	X       string `json:"x,omitempty"`
	Y       string `json:"y,omitempty"`
	N       string `json:"n,omitempty"`
	E       string `json:"e,omitempty"`
	D       string `json:"d,omitempty"`
	P       string `json:"p,omitempty"`
	Q       string `json:"q,omitempty"`
	DP      string `json:"dp,omitempty"`
	DQ      string `json:"dq,omitempty"`
	QI      string `json:"qi,omitempty"`
	K       string `json:"k,omitempty"`
}

var b64 = base64.RawURLEncoding

func loadKeys(dir string) (*keySet, error) {
	ks := &keySet{}
	var err error
	if ks.es256, err = loadOrCreate(filepath.Join(dir, "keys", "example-es256.jwk.json"), newES256, parseES256); err != nil {
		return nil, err
	}
	if ks.rs256, err = loadOrCreate(filepath.Join(dir, "keys", "example-rs256.jwk.json"), newRS256, parseRS256); err != nil {
		return nil, err
	}
	if ks.hmac, err = loadOrCreateHMAC(filepath.Join(dir, "secrets", "docs", "billing-hmac", "jwks.json")); err != nil {
		return nil, err
	}
	if ks.es256Next, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	return ks, nil
}

// loadOrCreate reads a private JWK, or creates the key and writes it when the
// file does not exist yet.
func loadOrCreate[K any](path string, create func() (K, jwk, error), parse func(jwk) (K, error)) (K, error) {
	var zero K
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, j, err := create()
		if err != nil {
			return zero, err
		}
		j.Warning = warning
		if err := writeJSON(path, j); err != nil {
			return zero, err
		}
		return k, nil
	}
	if err != nil {
		return zero, err
	}
	var j jwk
	if err := json.Unmarshal(data, &j); err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	k, err := parse(j)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func newES256() (*ecdsa.PrivateKey, jwk, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, jwk{}, err
	}
	d, err := k.Bytes()
	if err != nil {
		return nil, jwk{}, err
	}
	j := publicES256(k)
	j.D = b64.EncodeToString(d)
	return k, j, nil
}

func publicES256(k *ecdsa.PrivateKey) jwk {
	pt, err := k.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each for P-256
	if err != nil {
		panic(err) // a key from GenerateKey or ParseRawPrivateKey always encodes
	}
	return jwk{Kty: "EC", Crv: "P-256", Kid: kidES256, Use: "sig", Alg: "ES256",
		X: b64.EncodeToString(pt[1:33]), Y: b64.EncodeToString(pt[33:65])}
}

func parseES256(j jwk) (*ecdsa.PrivateKey, error) {
	d, err := b64.DecodeString(j.D)
	if err != nil {
		return nil, fmt.Errorf("d: %w", err)
	}
	return ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
}

func newRS256() (*rsa.PrivateKey, jwk, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, jwk{}, err
	}
	j := publicRS256(k)
	j.D = b64.EncodeToString(k.D.Bytes())
	j.P = b64.EncodeToString(k.Primes[0].Bytes())
	j.Q = b64.EncodeToString(k.Primes[1].Bytes())
	j.DP = b64.EncodeToString(k.Precomputed.Dp.Bytes())
	j.DQ = b64.EncodeToString(k.Precomputed.Dq.Bytes())
	j.QI = b64.EncodeToString(k.Precomputed.Qinv.Bytes())
	return k, j, nil
}

func publicRS256(k *rsa.PrivateKey) jwk {
	return jwk{Kty: "RSA", Kid: kidRS256, Use: "sig", Alg: "RS256",
		N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}
}

func parseRS256(j jwk) (*rsa.PrivateKey, error) {
	num := func(name, s string) (*big.Int, error) {
		b, err := b64.DecodeString(s)
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("%s: not base64url", name)
		}
		return new(big.Int).SetBytes(b), nil
	}
	var vals [5]*big.Int
	for i, f := range []struct{ name, v string }{{"n", j.N}, {"e", j.E}, {"d", j.D}, {"p", j.P}, {"q", j.Q}} {
		v, err := num(f.name, f.v)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	k := &rsa.PrivateKey{
		PublicKey: rsa.PublicKey{N: vals[0], E: int(vals[1].Int64())},
		D:         vals[2],
		Primes:    []*big.Int{vals[3], vals[4]},
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	k.Precompute()
	return k, nil
}

// loadOrCreateHMAC reads the billing secret, a JWKS document in the layout of
// a mounted Secret (secrets/<namespace>/<name>/<key>), or creates it.
func loadOrCreateHMAC(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32) // HS256 needs at least its hash size
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		set := struct {
			Keys []jwk `json:"keys"`
		}{[]jwk{{Kty: "oct", Kid: kidHS256, Use: "sig", Alg: "HS256", K: b64.EncodeToString(secret)}}}
		return secret, writeJSON(path, set)
	}
	if err != nil {
		return nil, err
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil || len(set.Keys) != 1 {
		return nil, fmt.Errorf("%s: want a JWKS with one oct key", path)
	}
	return b64.DecodeString(set.Keys[0].K)
}

// writePublicJWKS writes keys/public-jwks.json: the public halves of the ES256
// and RS256 example keys, the text policies.yaml embeds in jwks.inline.
func writePublicJWKS(dir string, ks *keySet) error {
	set := struct {
		Keys []jwk `json:"keys"`
	}{[]jwk{publicES256(ks.es256), publicRS256(ks.rs256)}}
	return writeJSON(filepath.Join(dir, "keys", "public-jwks.json"), set)
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ---- tokens ----------------------------------------------------------------

// token is one example token file.
type token struct {
	file  string
	value string
}

// Header and payload are written as JSON text rather than marshalled, so the
// examples can hold what encoding/json would never produce: duplicate keys,
// an exp that is a string.
const (
	hdrES256     = `{"alg":"ES256","typ":"JWT","kid":"` + kidES256 + `"}`
	hdrES256Next = `{"alg":"ES256","typ":"JWT","kid":"` + kidES256Next + `"}`
	hdrRS256     = `{"alg":"RS256","typ":"JWT","kid":"` + kidRS256 + `"}`
	hdrHS256     = `{"alg":"HS256","typ":"JWT","kid":"` + kidHS256 + `"}`
	hdrNone      = `{"alg":"none","typ":"JWT"}`
)

// shopClaims is the payload of a valid token of the shop realm, shaped like a
// Keycloak access token. Each override `"name":value` replaces the member of
// that name or is appended; `"name":-` removes the member.
func shopClaims(overrides ...string) string {
	members := []string{
		`"exp":` + fmt.Sprint(exp2100),
		`"iat":` + fmt.Sprint(iat2025),
		`"iss":"` + shopIssuer + `"`,
		`"aud":["orders-api","account"]`,
		`"sub":"7c9e6679-7425-40de-944b-e07fc1f90ae7"`,
		`"azp":"orders-web"`,
		`"scope":"openid email orders:read"`,
		`"email":"a.smith@example.com"`,
		`"email_verified":true`,
		`"realm_access":{"roles":["ops","offline_access"]}`,
	}
	for _, o := range overrides {
		name := o[:strings.Index(o, ":")]
		replaced := false
		for i, m := range members {
			if strings.HasPrefix(m, name+":") {
				replaced = true
				if strings.HasSuffix(o, ":-") {
					members = append(members[:i], members[i+1:]...)
				} else {
					members[i] = o
				}
				break
			}
		}
		if !replaced {
			members = append(members, o)
		}
	}
	return "{" + strings.Join(members, ",") + "}"
}

func tokens(ks *keySet) []token {
	es := func(payload string) string { return signES256(ks.es256, hdrES256, payload) }
	valid := es(shopClaims())

	// The classic algorithm-confusion attack: an HS256 token whose HMAC
	// secret is the issuer's RSA public key, which anyone can download.
	pubDER, err := x509.MarshalPKIXPublicKey(&ks.rs256.PublicKey)
	if err != nil {
		panic(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	legacyClaims := `{"exp":` + fmt.Sprint(exp2100) + `,"iat":` + fmt.Sprint(iat2025) +
		`,"iss":"` + legacyIssuer + `","sub":"7c9e6679-7425-40de-944b-e07fc1f90ae7","role":"admin"}`

	// A realistic oversized token: a user in 200 groups, each a GUID, as an
	// identity provider that embeds every group membership would send.
	groups := make([]string, 200)
	for i := range groups {
		h := sha256.Sum256([]byte(fmt.Sprint("group-", i)))
		groups[i] = fmt.Sprintf(`"%x-%x-%x-%x-%x"`, h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
	}

	hdr, pl, _ := strings.Cut(valid, ".")
	pl, sig, _ := strings.Cut(pl, ".")
	tamperedPayload := b64.EncodeToString([]byte(shopClaims(`"realm_access":{"roles":["admin","ops","offline_access"]}`)))
	// The valid token's header and payload as a padding base64 encoder
	// writes them: JWS wants unpadded base64url (RFC 7515 §2).
	padded := base64.URLEncoding.EncodeToString([]byte(hdrES256)) + "." + base64.URLEncoding.EncodeToString([]byte(shopClaims())) + "." + sig
	if !strings.Contains(padded, "=") {
		panic("padded.jwt: the example claims happen to need no padding; change them")
	}

	return []token{
		{"valid.jwt", valid},
		{"missing-role.jwt", es(shopClaims(`"realm_access":{"roles":["viewer","offline_access"]}`))},
		{"no-roles.jwt", es(shopClaims(`"realm_access":-`))},
		{"email-unverified.jwt", es(shopClaims(`"email_verified":false`))},
		{"other-client.jwt", es(shopClaims(`"azp":"reporting-batch"`))},
		{"expired.jwt", es(shopClaims(`"exp":`+fmt.Sprint(exp2024), `"iat":`+fmt.Sprint(iat2024)))},
		{"not-yet-valid.jwt", es(shopClaims(`"nbf":` + fmt.Sprint(nbf2099)))},
		{"issued-in-future.jwt", es(shopClaims(`"iat":` + fmt.Sprint(nbf2099)))},
		{"no-exp.jwt", es(shopClaims(`"exp":-`))},
		{"exp-string.jwt", es(shopClaims(`"exp":"` + fmt.Sprint(exp2100) + `"`))},
		{"duplicate-claims.jwt", es(shopClaims(`"sub":"7c9e6679-7425-40de-944b-e07fc1f90ae7","sub":"admin"`))},
		{"two-parts.jwt", hdr + "." + pl},
		{"padded.jwt", padded},
		{"tampered.jwt", hdr + "." + tamperedPayload + "." + sig},
		{"iss-trailing-slash.jwt", es(shopClaims(`"iss":"` + shopIssuer + `/"`))},
		{"aud-account.jwt", es(shopClaims(`"aud":"account"`))},
		{"rotated-kid.jwt", signES256(ks.es256Next, hdrES256Next, shopClaims())},
		{"rs256.jwt", signRS256(ks.rs256, hdrRS256, shopClaims())},
		{"alg-none.jwt", b64.EncodeToString([]byte(hdrNone)) + "." + b64.EncodeToString([]byte(shopClaims())) + "."},
		{"large.jwt", es(shopClaims(`"groups":[` + strings.Join(groups, ",") + `]`))},
		{"legacy-valid.jwt", signRS256(ks.rs256, hdrRS256, legacyClaims)},
		{"legacy-hs256-confusion.jwt", signHS256(pubPEM, `{"alg":"HS256","typ":"JWT","kid":"`+kidRS256+`"}`, legacyClaims)},
		{"billing-valid.jwt", signHS256(ks.hmac, hdrHS256, `{"exp":`+fmt.Sprint(exp2100)+`,"iat":`+fmt.Sprint(iat2025)+`,"iss":"`+billingIssuer+`","svc":"invoicer"}`)},
	}
}

func signingInput(header, payload string) string {
	return b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
}

func signES256(k *ecdsa.PrivateKey, header, payload string) string {
	in := signingInput(header, payload)
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
	if err != nil {
		panic(err)
	}
	// JWS ES256 signatures are R || S, 32 bytes each (RFC 7518 §3.4), not ASN.1.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + b64.EncodeToString(sig)
}

func signRS256(k *rsa.PrivateKey, header, payload string) string {
	in := signingInput(header, payload)
	sum := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return in + "." + b64.EncodeToString(sig)
}

func signHS256(secret []byte, header, payload string) string {
	in := signingInput(header, payload)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + b64.EncodeToString(m.Sum(nil))
}
