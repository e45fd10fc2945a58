package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var allAsymmetric = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

func TestParseStrictRefusals(t *testing.T) {
	rsaPub := jwkOf(t, &testRSA().PublicKey)
	rsaJWK := with(rsaPub, "kid", "a1", "alg", "RS256", "use", "sig")
	ecJWK := with(jwkOf(t, &testP256().PublicKey), "kid", "e1")
	// A point off the curve: flip the last bit of y.
	ecRaw, _ := testP256().PublicKey.Bytes()
	badY := append([]byte(nil), ecRaw[33:]...)
	badY[len(badY)-1] ^= 1
	// An 8200-bit odd modulus; only its size matters here (a real prime would take minutes).
	nBytes := make([]byte, 1025)
	if _, err := rand.Read(nBytes); err != nil {
		t.Fatal(err)
	}
	nBytes[0] |= 0x80
	nBytes[len(nBytes)-1] |= 1
	bigN := new(big.Int).SetBytes(nBytes)
	secret32 := testSecret()[:32]

	tests := []struct {
		name    string
		doc     []byte
		opts    ParseOptions
		wantErr string
	}{
		{
			name:    "private RSA key material",
			doc:     jwks(t, with(rsaJWK, "d", b64(testRSA().D.Bytes()))),
			wantErr: `keys[0] (kid "a1"): holds private key material ("d"); publish only the public key`,
		},
		{
			name:    "private RSA prime only",
			doc:     jwks(t, with(rsaJWK, "p", b64(testRSA().Primes[0].Bytes()))),
			wantErr: `keys[0] (kid "a1"): holds private key material ("p"); publish only the public key`,
		},
		{
			name:    "private EC key material",
			doc:     jwks(t, with(ecJWK, "d", b64(testP256().D.Bytes()))),
			wantErr: `keys[0] (kid "e1"): holds private key material ("d"); publish only the public key`,
		},
		{
			name:    "RSA under 2048 bits",
			doc:     jwks(t, with(jwkOf(t, &testRSA1024().PublicKey), "kid", "a1")),
			wantErr: `keys[0] (kid "a1"): RSA key is 1024 bits, at least 2048 are required`,
		},
		{
			name:    "RSA over 8192 bits",
			doc:     jwks(t, with(rsaPub, "n", b64(bigN.Bytes()))),
			wantErr: `keys[0]: RSA key is 8200 bits, at most 8192 are supported`,
		},
		{
			name:    "RSA exponent 1",
			doc:     jwks(t, with(rsaJWK, "e", "AQ")),
			wantErr: `keys[0] (kid "a1"): RSA exponent 1 is below 65537`,
		},
		{
			name:    "RSA exponent 3",
			doc:     jwks(t, with(rsaJWK, "e", "Aw")),
			wantErr: `keys[0] (kid "a1"): RSA exponent 3 is below 65537`,
		},
		{
			name:    "RSA exponent even",
			doc:     jwks(t, with(rsaJWK, "e", b64(big.NewInt(65538).Bytes()))),
			wantErr: `keys[0] (kid "a1"): RSA exponent 65538 is even`,
		},
		{
			name:    "RSA exponent too large",
			doc:     jwks(t, with(rsaJWK, "e", b64([]byte{1, 0, 0, 0, 1}))),
			wantErr: `keys[0] (kid "a1"): RSA exponent is larger than 32 bits`,
		},
		{
			name:    "EC point not on curve",
			doc:     jwks(t, with(ecJWK, "y", b64(badY))),
			opts:    ParseOptions{Algorithms: []string{"ES256"}},
			wantErr: `keys[0] (kid "e1"): EC point is not on curve P-256`,
		},
		{
			name:    "EC coordinate too short",
			doc:     jwks(t, with(ecJWK, "x", b64(ecRaw[2:33]))),
			wantErr: `keys[0] (kid "e1"): EC coordinates must be 32 bytes each for P-256`,
		},
		{
			name:    "EC curve unsupported",
			doc:     jwks(t, with(ecJWK, "crv", "secp256k1")),
			wantErr: `keys[0] (kid "e1"): EC curve "secp256k1" is not supported (P-256, P-384, P-521)`,
		},
		{
			name:    "EC alg of another curve",
			doc:     jwks(t, with(jwkOf(t, &testP384().PublicKey), "alg", "ES256")),
			wantErr: `keys[0]: alg ES256 does not fit an EC P-384 key`,
		},
		{
			name:    "RSA key with an HMAC alg",
			doc:     jwks(t, with(rsaJWK, "alg", "HS256")),
			opts:    ParseOptions{Algorithms: []string{"HS256"}, AllowSymmetric: true},
			wantErr: `keys[0] (kid "a1"): alg HS256 does not fit an RSA key`,
		},
		{
			name:    "oct shorter than 32 bytes",
			doc:     jwks(t, with(jwkOf(t, testSecret()[:31]), "kid", "h")),
			opts:    ParseOptions{Algorithms: []string{"HS256"}, AllowSymmetric: true},
			wantErr: `keys[0] (kid "h"): oct key is 31 bytes, at least 32 are required`,
		},
		{
			name:    "oct shorter than its alg's hash",
			doc:     jwks(t, with(jwkOf(t, testSecret()[:48]), "kid", "h", "alg", "HS512")),
			opts:    ParseOptions{Algorithms: []string{"HS512"}, AllowSymmetric: true},
			wantErr: `keys[0] (kid "h"): oct key is 48 bytes, HS512 requires at least 64`,
		},
		{
			name:    "oct without alg too short for every allowed alg",
			doc:     jwks(t, with(jwkOf(t, secret32), "kid", "h")),
			opts:    ParseOptions{Algorithms: []string{"HS384", "HS512"}, AllowSymmetric: true},
			wantErr: `keys[0] (kid "h"): an oct key without alg serves HS256, none of which the issuer allows (HS384, HS512)`,
		},
		{
			name:    "oct when symmetric keys are not allowed",
			doc:     jwks(t, with(jwkOf(t, secret32), "kid", "h", "alg", "HS256")),
			opts:    ParseOptions{Algorithms: []string{"HS256"}},
			wantErr: `keys[0] (kid "h"): oct (HMAC secret) keys are accepted only from a secretRef`,
		},
		{
			name:    "oct mixed with public keys",
			doc:     jwks(t, rsaJWK, with(jwkOf(t, secret32), "kid", "h", "alg", "HS256")),
			opts:    ParseOptions{Algorithms: []string{"RS256", "HS256"}, AllowSymmetric: true},
			wantErr: `keys[1] (kid "h"): an oct (HMAC secret) key and public keys cannot share one key set`,
		},
		{
			name:    "duplicate kid",
			doc:     jwks(t, rsaJWK, with(jwkOf(t, &testRSA2().PublicKey), "kid", "a1")),
			wantErr: `keys[1] (kid "a1"): duplicate kid, keys[0] has it too`,
		},
		{
			name:    "use enc",
			doc:     jwks(t, with(rsaJWK, "use", "enc")),
			wantErr: `keys[0] (kid "a1"): use is "enc"; only "sig" keys verify signatures`,
		},
		{
			name:    "key_ops without verify",
			doc:     jwks(t, with(rsaJWK, "key_ops", []string{"encrypt", "wrapKey"})),
			wantErr: `keys[0] (kid "a1"): key_ops lacks "verify"`,
		},
		{
			name:    "alg not allowed",
			doc:     jwks(t, with(rsaJWK, "alg", "PS256")),
			opts:    ParseOptions{Algorithms: []string{"RS256", "ES256"}},
			wantErr: `keys[0] (kid "a1"): alg PS256 is not in the issuer's algorithms (RS256, ES256)`,
		},
		{
			name:    "alg none",
			doc:     jwks(t, with(rsaJWK, "alg", "none")),
			wantErr: `keys[0] (kid "a1"): alg "none" is never accepted`,
		},
		{
			name:    "alg None in another spelling",
			doc:     jwks(t, with(rsaJWK, "alg", "nOnE")),
			wantErr: `keys[0] (kid "a1"): alg "none" is never accepted`,
		},
		{
			name:    "alg unsupported",
			doc:     jwks(t, with(ecJWK, "alg", "ES521")),
			wantErr: `keys[0] (kid "e1"): alg "ES521" is not a supported JWS signature algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512)`,
		},
		{
			name:    "no alg and type fits nothing allowed",
			doc:     jwks(t, ecJWK),
			opts:    ParseOptions{Algorithms: []string{"RS256"}},
			wantErr: `keys[0] (kid "e1"): an EC P-256 key without alg serves ES256, none of which the issuer allows (RS256)`,
		},
		{
			name:    "unparseable JWK",
			doc:     jwks(t, with(rsaJWK, "n", 12345)),
			wantErr: `keys[0] (kid "a1"): is not a valid JWK: `,
		},
		{
			name:    "element not an object",
			doc:     jwks(t, "just a string"),
			wantErr: `keys[0]: is not a JSON object`,
		},
		{
			name:    "no kty",
			doc:     jwks(t, with(rsaJWK, "kty", nil)),
			wantErr: `keys[0] (kid "a1"): has no kty`,
		},
		{
			name:    "unknown kty",
			doc:     jwks(t, with(rsaJWK, "kty", "RSA-PSS")),
			wantErr: `keys[0] (kid "a1"): kty "RSA-PSS" is not supported (RSA, EC, OKP, oct)`,
		},
		{
			name:    "kid not a string",
			doc:     jwks(t, with(rsaJWK, "kid", 7)),
			wantErr: `keys[0]: kid is not a string`,
		},
		{
			name:    "X25519 is not a signature curve",
			doc:     jwks(t, map[string]any{"kty": "OKP", "crv": "X25519", "x": b64(make([]byte, 32)), "kid": "x"}),
			wantErr: `keys[0] (kid "x"): OKP curve X25519 is for key agreement, not signatures`,
		},
		{
			name:    "long kid is truncated in the message",
			doc:     jwks(t, with(rsaJWK, "kid", strings.Repeat("k", 100), "use", "enc")),
			wantErr: `keys[0] (kid "` + strings.Repeat("k", 64) + `..."): use is "enc"; only "sig" keys verify signatures`,
		},
		{
			name:    "second key is the bad one",
			doc:     jwks(t, rsaJWK, with(ecJWK, "use", "enc")),
			opts:    ParseOptions{Algorithms: []string{"RS256", "ES256"}},
			wantErr: `keys[1] (kid "e1"): use is "enc"; only "sig" keys verify signatures`,
		},
		{
			name:    "empty set",
			doc:     []byte(`{"keys":[]}`),
			wantErr: `the key set holds no keys ("keys" is empty)`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set, err := ParseStrict(tc.doc, tc.opts)
			if err == nil {
				t.Fatalf("ParseStrict accepted the set (%d keys), want error %q", set.Len(), tc.wantErr)
			}
			got := err.Error()
			if strings.HasSuffix(tc.wantErr, ": ") {
				if !strings.HasPrefix(got, tc.wantErr) {
					t.Fatalf("error = %q, want prefix %q", got, tc.wantErr)
				}
			} else if got != tc.wantErr {
				t.Fatalf("error mismatch\n got: %s\nwant: %s", got, tc.wantErr)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("error spans lines: %q", got)
			}
			// Key material never appears in the message.
			for _, secret := range []string{b64(testRSA().D.Bytes()), b64(testRSA().N.Bytes())[:40], b64(secret32)} {
				if strings.Contains(got, secret) {
					t.Errorf("error leaks key material: %q", got)
				}
			}
		})
	}
}

func TestParseStrictAccepts(t *testing.T) {
	doc := jwks(t,
		with(jwkOf(t, &testRSA().PublicKey), "kid", "r1", "alg", "RS256", "use", "sig"),
		with(jwkOf(t, &testRSA2().PublicKey), "kid", "r2", "key_ops", []string{"verify"}),
		with(jwkOf(t, &testP256().PublicKey), "kid", "e1"),
		with(jwkOf(t, &testP521().PublicKey), "kid", "e5", "alg", "ES512"),
		jwkOf(t, testEd().Public()),
	)
	set, err := ParseStrict(doc, ParseOptions{Algorithms: allAsymmetric})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r1", "r2", "e1", "e5"}, set.KIDs()); diff != "" {
		t.Errorf("KIDs (-want +got):\n%s", diff)
	}
	if set.Len() != 5 {
		t.Fatalf("Len = %d, want 5", set.Len())
	}
	type keyView struct {
		KID, Alg, Type string
		Fits           []string
	}
	var got []keyView
	for _, k := range set.Keys() {
		got = append(got, keyView{k.KID, k.Alg, k.Type.String(), k.FittingAlgorithms()})
	}
	want := []keyView{
		{"r1", "RS256", "RSA", []string{"RS256"}},
		{"r2", "", "RSA", []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}},
		{"e1", "", "EC P-256", []string{"ES256"}},
		{"e5", "ES512", "EC P-521", []string{"ES512"}},
		{"", "", "Ed25519", []string{"EdDSA"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if k := set.Lookup("r2"); k == nil || !k.Public.(*rsa.PublicKey).Equal(&testRSA2().PublicKey) {
		t.Errorf("Lookup(r2) = %v, want the second RSA key", k)
	}
	if !set.Lookup("e1").Public.(*ecdsa.PublicKey).Equal(&testP256().PublicKey) {
		t.Error("Lookup(e1) is not the P-256 key")
	}
	if !set.Keys()[4].Public.(ed25519.PublicKey).Equal(testEd().Public()) {
		t.Error("the Ed25519 key differs")
	}
	if set.Lookup("nope") != nil || set.Lookup("") != nil {
		t.Error("Lookup of an unknown or empty kid returned a key")
	}
}

func TestParseDefaultsAndSymmetric(t *testing.T) {
	// Empty Algorithms means the API default RS256+ES256: a PS256-bound key is refused.
	_, err := ParseStrict(jwks(t, with(jwkOf(t, &testRSA().PublicKey), "alg", "PS256")), ParseOptions{})
	if err == nil || !strings.Contains(err.Error(), "(RS256, ES256)") {
		t.Fatalf("ParseStrict with default algorithms: err = %v, want refusal naming RS256, ES256", err)
	}
	// An HMAC secret from a Secret: a 32-byte key without alg fits HS256 only.
	set, err := ParseStrict(jwks(t, with(jwkOf(t, testSecret()[:32]), "kid", "h")), ParseOptions{Algorithms: []string{"HS256", "HS512"}, AllowSymmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	k := set.Lookup("h")
	if diff := cmp.Diff([]string{"HS256"}, k.FittingAlgorithms()); diff != "" {
		t.Errorf("oct fits (-want +got):\n%s", diff)
	}
}

func TestParseLenientSkips(t *testing.T) {
	good := with(jwkOf(t, &testRSA().PublicKey), "kid", "r1", "use", "sig")
	doc := jwks(t,
		good,
		with(jwkOf(t, &testRSA2().PublicKey), "kid", "enc1", "use", "enc"),
		with(jwkOf(t, &testP256().PublicKey), "kid", "priv", "d", b64(testP256().D.Bytes())),
		with(jwkOf(t, &testRSA2().PublicKey), "kid", "r1"),
		with(jwkOf(t, testSecret()), "kid", "h", "alg", "HS256"),
		with(jwkOf(t, &testP256().PublicKey), "kid", "e1", "alg", "ES256"),
		with(jwkOf(t, &testRSA2().PublicKey), "kid", "ps", "alg", "PS512"),
		42,
	)
	set, skipped, err := ParseLenient(doc, ParseOptions{Algorithms: []string{"RS256", "ES256"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r1", "e1"}, set.KIDs()); diff != "" {
		t.Errorf("kept kids (-want +got):\n%s", diff)
	}
	if !set.Lookup("r1").Public.(*rsa.PublicKey).Equal(&testRSA().PublicKey) {
		t.Error("of duplicate kids the first must be kept")
	}
	want := []Skipped{
		{Index: 1, KID: "enc1", Reason: `use is "enc"; only "sig" keys verify signatures`},
		{Index: 2, KID: "priv", Reason: `holds private key material ("d"); publish only the public key`},
		{Index: 3, KID: "r1", Reason: "duplicate kid, keys[0] has it too"},
		{Index: 4, KID: "h", Reason: "oct (HMAC secret) keys are accepted only from a secretRef"},
		{Index: 6, KID: "ps", Reason: "alg PS512 is not in the issuer's algorithms (RS256, ES256)"},
		{Index: 7, Reason: "is not a JSON object"},
	}
	if diff := cmp.Diff(want, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
	if got, want := skipped[0].String(), `keys[1] (kid "enc1"): use is "enc"; only "sig" keys verify signatures`; got != want {
		t.Errorf("Skipped.String() = %q, want %q", got, want)
	}

	// All keys skipped: an empty set, no error.
	set, skipped, err = ParseLenient(jwks(t, with(good, "use", "enc")), ParseOptions{})
	if err != nil || set.Len() != 0 || len(skipped) != 1 {
		t.Errorf("all skipped: len=%d skipped=%d err=%v, want 0, 1, nil", set.Len(), len(skipped), err)
	}
}

func TestParseNotJWKS(t *testing.T) {
	docs := map[string]string{
		"empty":          ``,
		"whitespace":     "  \n",
		"array":          `[]`,
		"null":           `null`,
		"truncated":      `{"keys":[`,
		"single JWK":     `{"kty":"RSA","n":"AQAB","e":"AQAB"}`,
		"no keys member": `{"foo":1}`,
		"keys object":    `{"keys":{}}`,
		"keys null":      `{"keys":null}`,
		"keys string":    `{"keys":"x"}`,
		"html":           `<html>Service Unavailable</html>`,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			if _, _, err := ParseLenient([]byte(doc), ParseOptions{}); !errors.Is(err, ErrNotJWKS) {
				t.Errorf("ParseLenient err = %v, want ErrNotJWKS", err)
			}
			if _, err := ParseStrict([]byte(doc), ParseOptions{}); !errors.Is(err, ErrNotJWKS) {
				t.Errorf("ParseStrict err = %v, want ErrNotJWKS", err)
			}
		})
	}
}

func TestKeyErrorIsTyped(t *testing.T) {
	_, err := ParseStrict(jwks(t, with(jwkOf(t, &testRSA().PublicKey), "kid", "a1", "use", "enc")), ParseOptions{})
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("err %T is not a *KeyError", err)
	}
	if diff := cmp.Diff(KeyError{Index: 0, KID: "a1", Reason: `use is "enc"; only "sig" keys verify signatures`}, *ke); diff != "" {
		t.Errorf("KeyError (-want +got):\n%s", diff)
	}
}

func TestNewKeyChecks(t *testing.T) {
	tests := []struct {
		name    string
		alg     string
		pub     any
		wantErr string
	}{
		{"rsa ok", "PS256", &testRSA().PublicKey, ""},
		{"rsa small", "", &testRSA1024().PublicKey, "RSA key is 1024 bits, at least 2048 are required"},
		{"ec ok", "ES384", &testP384().PublicKey, ""},
		{"ec wrong alg", "ES512", &testP384().PublicKey, "alg ES512 does not fit an EC P-384 key"},
		{"ed ok", "EdDSA", testEd().Public(), ""},
		{"ed short", "", ed25519.PublicKey(make([]byte, 31)), "Ed25519 key is 31 bytes, it must be 32"},
		{"oct ok", "HS512", testSecret(), ""},
		{"oct short for alg", "HS384", testSecret()[:40], "oct key is 40 bytes, HS384 requires at least 48"},
		{"unknown alg", "XS256", &testRSA().PublicKey, `alg "XS256" is not a supported JWS signature algorithm`},
		{"unsupported type", "", "a string", "unsupported key type string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewKey("k", tc.alg, tc.pub)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("NewKey err = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func TestNilSetIsEmpty(t *testing.T) {
	var s *Set
	if s.Len() != 0 || s.Lookup("x") != nil || s.Keys() != nil || s.KIDs() != nil {
		t.Error("nil *Set must behave as an empty set")
	}
	if _, err := NewSet(mustKey(t, "a", "", &testRSA().PublicKey), mustKey(t, "a", "", &testRSA2().PublicKey)); err == nil {
		t.Error("NewSet accepted a duplicate kid")
	}
}

func TestJWKRoundTripThroughJSON(t *testing.T) {
	// A document with insignificant whitespace and members in any order parses the same.
	m := with(jwkOf(t, &testRSA().PublicKey), "kid", "r1")
	b, _ := json.MarshalIndent(map[string]any{"keys": []any{m}, "extra": true}, "", "  ")
	set, err := ParseStrict(b, ParseOptions{})
	if err != nil || set.Lookup("r1") == nil {
		t.Fatalf("ParseStrict(indented) = %v, %v", set, err)
	}
}
