package keys

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"
)

func TestROCAFingerprint(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "wycheproof", "json_web_key_test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		TestGroups []struct {
			Comment string `json:"comment"`
			Public  struct {
				Keys []struct {
					N string `json:"n"`
				} `json:"keys"`
			} `json:"public"`
		} `json:"testGroups"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	modulus := func(s string) *big.Int {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(b)
	}
	found := false
	for _, g := range f.TestGroups {
		for _, k := range g.Public.Keys {
			if k.N == "" {
				continue
			}
			want := g.Comment == "jws_rsa_roca_key"
			found = found || want
			if got := hasROCAFingerprint(modulus(k.N)); got != want {
				t.Errorf("group %s: hasROCAFingerprint = %v, want %v", g.Comment, got, want)
			}
		}
	}
	if !found {
		t.Fatal("the ROCA vector is missing from the Wycheproof file")
	}
	for _, n := range []*big.Int{testRSA().N, testRSA2().N, testRSA1024().N} {
		if hasROCAFingerprint(n) {
			t.Error("a freshly generated modulus has the ROCA fingerprint")
		}
	}
	// The refusal as users see it.
	var doc struct{ Keys []map[string]any }
	for _, g := range f.TestGroups {
		if g.Comment == "jws_rsa_roca_key" {
			doc.Keys = append(doc.Keys, map[string]any{"kty": "RSA", "n": g.Public.Keys[0].N, "e": "AQAB", "kid": "roca"})
		}
	}
	_, err = ParseStrict(jwks(t, doc.Keys[0]), ParseOptions{})
	want := `keys[0] (kid "roca"): RSA modulus has the ROCA fingerprint (CVE-2017-15361), its private key can be recovered`
	if err == nil || err.Error() != want {
		t.Errorf("ParseStrict(ROCA key) err = %v, want %q", err, want)
	}
}
