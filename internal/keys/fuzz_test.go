package keys

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseLenient feeds arbitrary documents to the parsers. The seed corpus is in
// testdata/fuzz/FuzzParseLenient. Invariants: no panic; lenient accounts for every element
// (kept or skipped, each skip with a reason); strict succeeds only when lenient skipped nothing
// and then keeps the same keys; every kept key fits at least one allowed algorithm; a kid names
// one key; verifying garbage with any kept key fails cleanly.
func FuzzParseLenient(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"HS256"}]}`))
	opts := []ParseOptions{
		{Algorithms: Algorithms[:10]},
		{Algorithms: Algorithms, AllowSymmetric: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range opts {
			set, skipped, err := ParseLenient(data, o)
			if err != nil {
				if !errors.Is(err, ErrNotJWKS) {
					t.Fatalf("lenient error does not wrap ErrNotJWKS: %v", err)
				}
				if _, serr := ParseStrict(data, o); serr == nil {
					t.Fatal("strict accepted a document lenient calls not a JWKS")
				}
				continue
			}
			var doc struct{ Keys []json.RawMessage }
			if jerr := json.Unmarshal(data, &doc); jerr != nil {
				t.Fatalf("lenient accepted a document encoding/json rejects: %v", jerr)
			}
			if set.Len()+len(skipped) != len(doc.Keys) {
				t.Fatalf("%d kept + %d skipped != %d elements", set.Len(), len(skipped), len(doc.Keys))
			}
			for _, s := range skipped {
				if s.Reason == "" || s.Index < 0 || s.Index >= len(doc.Keys) {
					t.Fatalf("bad skip record %+v", s)
				}
			}
			seen := map[string]bool{}
			for _, k := range set.Keys() {
				if !o.AllowSymmetric && k.Type == Oct {
					t.Fatal("an oct key was kept without AllowSymmetric")
				}
				fits := false
				for _, alg := range o.Algorithms {
					if k.Fits(alg) {
						fits = true
						if err := VerifySignature(alg, k, data, data); err == nil && len(data) > 0 {
							t.Fatalf("the document verified as its own %s signature", alg)
						}
					}
				}
				if !fits {
					t.Fatalf("kept key %q (%v, alg %q) fits no allowed algorithm", k.KID, k.Type, k.Alg)
				}
				if k.KID != "" {
					if seen[k.KID] || set.Lookup(k.KID) != k {
						t.Fatalf("kid %q is not a unique index entry", k.KID)
					}
					seen[k.KID] = true
				}
			}
			strict, serr := ParseStrict(data, o)
			switch {
			case serr == nil && len(skipped) > 0:
				t.Fatalf("strict accepted a set lenient skipped keys of: %v", skipped)
			case serr == nil && strict.Len() != set.Len():
				t.Fatalf("strict kept %d keys, lenient %d", strict.Len(), set.Len())
			case serr != nil && len(skipped) == 0 && set.Len() > 0:
				t.Fatalf("strict refused a set lenient kept whole: %v", serr)
			}
		}
	})
}
