package keys

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The Google Wycheproof JWS and JWK vectors, copied into testdata so the tests do not depend on
// anything outside the repository.

type wycheproofFile struct {
	NumberOfTests int               `json:"numberOfTests"`
	TestGroups    []wycheproofGroup `json:"testGroups"`
}

type wycheproofGroup struct {
	Comment string          `json:"comment"`
	Private json.RawMessage `json:"private"`
	Public  json.RawMessage `json:"public"`
	Tests   []struct {
		TcID    int      `json:"tcId"`
		Comment string   `json:"comment"`
		JWS     string   `json:"jws"`
		Result  string   `json:"result"`
		Flags   []string `json:"flags"`
	} `json:"tests"`
}

// wycheproofDeviations are the vectors whose expected result claimguard deliberately does not
// share, with the reason and a check that proves the deviation is only that reason. Every other
// vector must give exactly the Wycheproof result.
var wycheproofDeviations = map[string]map[int]string{
	"json_web_signature_test.json": {
		// RFC 7520 figure 20 is signed with PS384, but Wycheproof's copy of the key says
		// "alg":"PS256". A JWK's alg binds the key (CONTRACT.md), so the token is refused.
		346: "keyAlgBindsPS256",
		350: "keyAlgBindsPS256",
		// RFC 7520 figure 27's key carries "alg":"ES521", which is no JOSE algorithm (P-521 is
		// ES512): the key is refused at parse time, so nothing verifies with it.
		347: "keyAlgES521",
		351: "keyAlgES521",
		// "invalidBase64Padding" vectors are byte-for-byte identical to the valid tcId 357 (the
		// padding was lost when the file was generated), so they verify.
		367: "identicalTo357",
		370: "identicalTo357",
		// The MAC was computed over the header/payload before a '?' was inserted; Wycheproof
		// accepts libraries that drop invalid characters. claimguard verifies the exact ASCII
		// signing input and decodes base64url strictly, so it refuses them.
		372: "invalidCharacterRefused",
		373: "invalidCharacterRefused",
	},
}

// wycheproofAlgorithms is the allow-list the vectors run under: everything this package verifies.
var wycheproofAlgorithms = ParseOptions{Algorithms: Algorithms, AllowSymmetric: true}

func TestWycheproof(t *testing.T) {
	for _, name := range []string{"json_web_signature_test.json", "json_web_key_test.json"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "wycheproof", name))
			if err != nil {
				t.Fatal(err)
			}
			var f wycheproofFile
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			ran, deviated := 0, 0
			for _, g := range f.TestGroups {
				// The group's public form when it has one (tcId 349's private JWK has a malformed
				// key_ops "sign, verify"), else the private JWK converted.
				keySource := g.Public
				if keySource == nil {
					keySource = g.Private
				}
				set, parseErr := ParseStrict(publicJWKS(t, keySource), wycheproofAlgorithms)
				checkPrivateRefused(t, g.Comment, g.Private)
				for _, tc := range g.Tests {
					ran++
					err := parseErr
					if err == nil {
						err = verifyCompact(set, tc.JWS, wycheproofAlgorithms.Algorithms)
					}
					got := "valid"
					if err != nil {
						got = "invalid"
					}
					if why, ok := wycheproofDeviations[name][tc.TcID]; ok {
						deviated++
						checkDeviation(t, why, tc.TcID, keySource, tc.JWS, got)
						continue
					}
					if got != tc.Result {
						t.Errorf("tcId %d (%s, group %s): got %s (err: %v), want %s", tc.TcID, tc.Comment, g.Comment, got, err, tc.Result)
					}
				}
			}
			if ran != f.NumberOfTests {
				t.Errorf("ran %d vectors, the file declares %d", ran, f.NumberOfTests)
			}
			if deviated != len(wycheproofDeviations[name]) {
				t.Errorf("met %d of the %d declared deviations", deviated, len(wycheproofDeviations[name]))
			}
			t.Logf("%s: %d vectors, %d documented deviations", name, ran, deviated)
		})
	}
}

// checkDeviation asserts claimguard's result for a deviating vector and that the stated reason is
// the only one.
func checkDeviation(t *testing.T, why string, tcID int, private json.RawMessage, jws, got string) {
	t.Helper()
	mutate := func(members ...any) *Set {
		doc := publicJWKS(t, private)
		var d struct{ Keys []map[string]any }
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		d.Keys[0] = with(d.Keys[0], members...)
		set, err := ParseStrict(jwks(t, d.Keys[0]), wycheproofAlgorithms)
		if err != nil {
			t.Fatalf("tcId %d: mutated key: %v", tcID, err)
		}
		return set
	}
	switch why {
	case "keyAlgBindsPS256":
		if got != "invalid" {
			t.Errorf("tcId %d: a PS256-bound key verified a PS384 token", tcID)
		}
		if err := verifyCompact(mutate("alg", nil), jws, Algorithms); err != nil {
			t.Errorf("tcId %d: without the alg binding the signature must verify: %v", tcID, err)
		}
	case "keyAlgES521":
		if got != "invalid" {
			t.Errorf("tcId %d: a key with alg ES521 was accepted", tcID)
		}
		if err := verifyCompact(mutate("alg", "ES512"), jws, Algorithms); err != nil {
			t.Errorf("tcId %d: with alg ES512 the signature must verify: %v", tcID, err)
		}
	case "identicalTo357":
		if got != "valid" {
			t.Errorf("tcId %d: a copy of a valid vector was refused", tcID)
		}
	case "invalidCharacterRefused":
		if got != "invalid" {
			t.Errorf("tcId %d: a token with an invalid base64url character was accepted", tcID)
		}
	default:
		t.Fatalf("unknown deviation %q", why)
	}
}

// publicJWKS converts a vector's private JWK or JWKS into a public JWKS: members carrying
// private material are removed from asymmetric keys and key_ops "sign" becomes "verify" (an oct
// key is its secret and stays whole).
func publicJWKS(t *testing.T, private json.RawMessage) []byte {
	t.Helper()
	var probe struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(private, &probe); err != nil {
		t.Fatal(err)
	}
	keys := probe.Keys
	if keys == nil {
		var single map[string]any
		if err := json.Unmarshal(private, &single); err != nil {
			t.Fatal(err)
		}
		keys = []map[string]any{single}
	}
	out := make([]any, len(keys))
	for i, k := range keys {
		if k["kty"] != "oct" {
			k = with(k, "d", nil, "p", nil, "q", nil, "dp", nil, "dq", nil, "qi", nil, "oth", nil)
			// The public half of a key for "sign" is a key for "verify".
			if ops, ok := k["key_ops"].([]any); ok {
				pub := make([]any, len(ops))
				for j, op := range ops {
					if op == "sign" {
						op = "verify"
					}
					pub[j] = op
				}
				k = with(k, "key_ops", pub)
			}
		}
		out[i] = k
	}
	return jwks(t, out...)
}

// checkPrivateRefused asserts that a vector's private asymmetric JWK is refused as it is.
func checkPrivateRefused(t *testing.T, group string, private json.RawMessage) {
	t.Helper()
	if !strings.Contains(string(private), `"d"`) || strings.Contains(string(private), `"oct"`) {
		return
	}
	doc := []byte(private)
	if !strings.Contains(string(private), `"keys"`) {
		doc = []byte(`{"keys":[` + string(private) + `]}`)
	}
	_, err := ParseStrict(doc, wycheproofAlgorithms)
	if err == nil || !strings.Contains(err.Error(), "private key material") {
		t.Errorf("group %s: private JWK: err = %v, want a private key material refusal", group, err)
	}
}

var strictB64 = base64.RawURLEncoding.Strict()

// verifyCompact is the policy-like check the vectors run through: exactly three parts, strict
// base64url, a JSON object header with a string alg, the key named by kid (or every key that
// fits), the key's own alg equal to the header's, the alg allowed, then VerifySignature.
func verifyCompact(set *Set, jws string, allowed []string) error {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%d parts", len(parts))
	}
	hb, err := strictB64.DecodeString(parts[0])
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if _, err := strictB64.DecodeString(parts[1]); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	sig, err := strictB64.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	var header map[string]any
	if err := json.Unmarshal(hb, &header); err != nil || header == nil {
		return errors.New("header is not a JSON object")
	}
	alg, ok := header["alg"].(string)
	if !ok || !contains(allowed, alg) {
		return fmt.Errorf("alg %v not allowed", header["alg"])
	}
	var candidates []*Key
	if kid, present := header["kid"]; present {
		s, ok := kid.(string)
		if !ok {
			return errors.New("kid is not a string")
		}
		if k := set.Lookup(s); k != nil {
			candidates = []*Key{k}
		}
	} else {
		candidates = set.Keys()
	}
	input := []byte(parts[0] + "." + parts[1])
	tried := false
	for _, k := range candidates {
		if !k.Fits(alg) {
			continue
		}
		tried = true
		if err := VerifySignature(alg, k, input, sig); err == nil {
			return nil
		} else if !errors.Is(err, ErrSignatureInvalid) {
			return err
		}
	}
	if !tried {
		return errors.New("no key fits")
	}
	return ErrSignatureInvalid
}
