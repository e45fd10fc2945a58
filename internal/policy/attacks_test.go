package policy

import (
	"crypto/x509"
	"encoding/json"
	"strings"
	"testing"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// The attacks of issue 3, each with its own test. Every token carries the
// policy's real issuer and otherwise valid claims, so the only thing wrong
// with it is the attack itself.

func attackPolicy(t *testing.T) *Policy {
	t.Helper()
	return mustCompile(t, baseSpec(), testOptions())
}

func expectReason(t *testing.T, p *Policy, tok string, want Reason) {
	t.Helper()
	d := p.Decide(bearer(tok))
	if d.Allowed || d.Reason != want || d.Status != contractStatus[want] {
		t.Errorf("decision = %+v, want denied with %s (%d)", d, want, contractStatus[want])
	}
}

func unsigned(header, payload string, sig string) string {
	return b64([]byte(header)) + "." + b64([]byte(payload)) + "." + sig
}

func payloadJSON(t *testing.T, m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAttackAlgNone(t *testing.T) {
	p := attackPolicy(t)
	pl := payloadJSON(t, claims())
	rsSig := b64(fixtures().signer("RS256").sign(t, []byte("x")))
	for _, alg := range []string{"none", "None", "NONE", "nOnE", "noNe"} {
		t.Run(alg+"/no signature", func(t *testing.T) {
			expectReason(t, p, unsigned(`{"alg":"`+alg+`"}`, pl, ""), AlgNotAllowed)
		})
		t.Run(alg+"/with kid and signature", func(t *testing.T) {
			expectReason(t, p, unsigned(`{"alg":"`+alg+`","kid":"rsa1"}`, pl, rsSig), AlgNotAllowed)
		})
	}
}

func TestAttackHS256WithRSAPublicKey(t *testing.T) {
	// The classic key confusion: sign HS256 with the RSA public key (as PEM
	// and as DER) and hope the verifier uses the key bytes as an HMAC secret.
	k := fixtures()
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := []byte("-----BEGIN PUBLIC KEY-----\n" + b64(der) + "\n-----END PUBLIC KEY-----\n")
	for name, secret := range map[string][]byte{"der": der, "pem": pemBytes} {
		for _, kid := range []string{"rsa1", ""} {
			t.Run(name+"/kid="+kid, func(t *testing.T) {
				tok := signer{"HS256", secret, kid}.token(t, nil, claims())
				// The RS issuer does not allow HS256 at all.
				expectReason(t, attackPolicy(t), tok, AlgNotAllowed)
			})
		}
	}
	t.Run("issuer allowing HS256 and RS256", func(t *testing.T) {
		// Even where HS256 is allowed (a secretRef issuer), an RSA key never
		// fits HS256: with its kid the alg is refused for that key.
		spec := baseSpec()
		spec.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"RS256", "HS256"}
		spec.Issuers[0].JWKS = authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "rsa", Key: "jwks.json"}}
		opts := testOptions()
		opts.Secrets = func(ns, name, key string) ([]byte, error) {
			if name == "rsa" {
				return []byte(jwks(rsaJWK("rsa1", "", &k.rsa.PublicKey))), nil
			}
			return testSecrets(ns, name, key)
		}
		p := mustCompile(t, spec, opts)
		expectReason(t, p, signer{"HS256", der, "rsa1"}.token(t, nil, claims()), AlgNotAllowed)
		expectReason(t, p, signer{"HS256", der, ""}.token(t, nil, claims()), KeyNotFound)
	})
}

func TestAttackAlgOutsideAllowList(t *testing.T) {
	spec := baseSpec()
	k := fixtures()
	spec.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"ES256", "PS256"}
	spec.Issuers[0].JWKS.Inline = jwks(rsaJWK("rsa1", "", &k.rsa.PublicKey), ecJWK("ec1", &k.ec.PublicKey))
	p := mustCompile(t, spec, testOptions())
	// A valid RS256 signature by a key of the set, but RS256 is not allowed.
	expectReason(t, p, k.signer("RS256").token(t, nil, claims()), AlgNotAllowed)
	// Unknown and oddly spelled algorithms.
	pl := payloadJSON(t, claims())
	for _, alg := range []string{"rs256", "RS1", "ES256K", "", "HS256 "} {
		expectReason(t, p, unsigned(`{"alg":"`+alg+`","kid":"ec1"}`, pl, "AAAA"), AlgNotAllowed)
	}
}

func TestAttackEmbeddedKeyHeaders(t *testing.T) {
	// jku, x5u, jwk and x5c offer the attacker's key: they are ignored and
	// never fetched, so the attacker's signature fails against our keys.
	k := fixtures()
	attackerJWK := rsaJWK("rsa1", "RS256", &k.attacker.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(&k.attacker.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	headers := map[string]map[string]any{
		"jku": {"jku": "https://attacker.example/jwks.json"},
		"x5u": {"x5u": "https://attacker.example/cert.pem"},
		"jwk": {"jwk": attackerJWK},
		"x5c": {"x5c": []string{b64(der)}},
	}
	p := attackPolicy(t)
	for name, h := range headers {
		t.Run(name, func(t *testing.T) {
			for _, kid := range []string{"rsa1", ""} {
				s := signer{"RS256", k.attacker, kid}
				expectReason(t, p, s.token(t, h, claims()), SignatureInvalid)
			}
			// The same header on a token signed by our key changes nothing.
			if d := p.Decide(bearer(k.signer("RS256").token(t, h, claims()))); !d.Allowed {
				t.Errorf("genuine token with %s header: %+v", name, d)
			}
		})
	}
}

func TestAttackCrit(t *testing.T) {
	p := attackPolicy(t)
	rs := fixtures().signer("RS256")
	for name, crit := range map[string]any{
		"unknown extension":  []string{"exp"},
		"b64":                []string{"b64"},
		"names absent param": []string{"x-absent"},
		"empty list":         []string{},
		"not a list":         "b64",
	} {
		t.Run(name, func(t *testing.T) {
			expectReason(t, p, rs.token(t, map[string]any{"crit": crit, "b64": false}, claims()), TokenMalformed)
		})
	}
}

func TestAttackKid(t *testing.T) {
	p := attackPolicy(t)
	k := fixtures()
	t.Run("kid naming another key", func(t *testing.T) {
		// Signed by rsa1 but claims to be rsa2 (PS256-bound): the header
		// alg RS256 does not fit rsa2.
		expectReason(t, p, signer{"RS256", k.rsa, "rsa2"}.token(t, nil, claims()), AlgNotAllowed)
		// Signed by rsa2 (PS256) but names ec1.
		expectReason(t, p, signer{"PS256", k.rsa2, "ec1"}.token(t, nil, claims()), AlgNotAllowed)
		// Signed by the EC key, naming the Ed25519 key's kid with ES256.
		expectReason(t, p, signer{"ES256", k.ec, "ed1"}.token(t, nil, claims()), AlgNotAllowed)
		// Same type, wrong key: attacker RSA under our kid.
		expectReason(t, p, signer{"RS256", k.attacker, "rsa1"}.token(t, nil, claims()), SignatureInvalid)
	})
	for _, kid := range []string{"unknown", "../../dev/null", "' OR 1=1 --", "/etc/passwd", "rsa1\x00", strings.Repeat("k", 500)} {
		t.Run("kid "+shorten([]byte(kid)), func(t *testing.T) {
			expectReason(t, p, signer{"RS256", k.rsa, kid}.token(t, nil, claims()), KeyNotFound)
		})
	}
	t.Run("kid not a string", func(t *testing.T) {
		expectReason(t, p, signer{"RS256", k.rsa, ""}.token(t, map[string]any{"kid": 7}, claims()), TokenMalformed)
	})
}

func TestAttackECDSAZeroSignature(t *testing.T) {
	p := attackPolicy(t)
	pl := payloadJSON(t, claims())
	for name, sig := range map[string][]byte{
		"r=s=0":      make([]byte, 64),
		"r=0":        append(make([]byte, 32), append(make([]byte, 31), 1)...),
		"short zero": make([]byte, 2),
	} {
		t.Run(name, func(t *testing.T) {
			for _, kid := range []string{`,"kid":"ec1"`, ""} {
				expectReason(t, p, unsigned(`{"alg":"ES256"`+kid+`}`, pl, b64(sig)), SignatureInvalid)
			}
		})
	}
}

func TestAttackStrippedSignature(t *testing.T) {
	p := attackPolicy(t)
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			tok := fixtures().signer(alg).token(t, nil, claims())
			stripped := tok[:strings.LastIndexByte(tok, '.')+1]
			expectReason(t, p, stripped, SignatureInvalid)
			expectReason(t, p, tok[:strings.LastIndexByte(tok, '.')], TokenMalformed)
		})
	}
	t.Run("HS256", func(t *testing.T) {
		c := claims()
		c["iss"] = testHSIssuer
		tok := fixtures().signer("HS256").token(t, nil, c)
		expectReason(t, p, tok[:strings.LastIndexByte(tok, '.')+1], SignatureInvalid)
	})
}

func TestAttackJWE(t *testing.T) {
	p := attackPolicy(t)
	jwe := b64([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa1"}`)) + ".ZW5j.aXY.Y2lwaGVy.dGFn"
	expectReason(t, p, jwe, TokenMalformed)
	d := p.Decide(bearer(jwe))
	if !strings.Contains(d.Description, "JWE") {
		t.Errorf("description %q does not say JWE", d.Description)
	}
}

func TestAttackOversizedToken(t *testing.T) {
	rs := fixtures().signer("RS256")
	p := attackPolicy(t)
	big := rs.token(t, nil, withClaims(func(m map[string]any) { m["pad"] = strings.Repeat("A", 8192) }))
	expectReason(t, p, big, TokenTooLarge)
	// The cap is checked before any decoding: garbage of that size is
	// token_too_large, not token_malformed.
	expectReason(t, p, strings.Repeat("!", 8193), TokenTooLarge)
	expectReason(t, p, strings.Repeat("!", 8192), TokenMalformed)
	// The cap is configurable.
	opts := testOptions()
	opts.MaxTokenBytes = 100
	small := mustCompile(t, baseSpec(), opts)
	expectReason(t, small, rs.token(t, nil, claims()), TokenTooLarge)
}

func TestAttackDuplicateClaims(t *testing.T) {
	// Duplicate keys let two parsers read two different tokens.
	rs := fixtures().signer("RS256")
	p := attackPolicy(t)
	pl := payloadJSON(t, claims())
	dupIss := `{"iss":"https://evil.example",` + pl[1:]
	expectReason(t, p, rs.raw(t, `{"alg":"RS256","kid":"rsa1"}`, dupIss), TokenMalformed)
	nested := strings.Replace(pl, `"roles":[`, `"roles":["x"],"roles":[`, 1)
	expectReason(t, p, rs.raw(t, `{"alg":"RS256","kid":"rsa1"}`, nested), TokenMalformed)
	expectReason(t, p, rs.raw(t, `{"alg":"RS256","alg":"none","kid":"rsa1"}`, pl), TokenMalformed)
}

func TestAttackMalformedStructure(t *testing.T) {
	rs := fixtures().signer("RS256")
	p := attackPolicy(t)
	good := rs.token(t, nil, claims())
	parts := strings.Split(good, ".")
	tests := map[string]string{
		"one part":           parts[0],
		"four parts":         good + ".x",
		"padded header":      parts[0] + "=." + parts[1] + "." + parts[2],
		"std alphabet":       strings.NewReplacer("-", "+", "_", "/").Replace(parts[0]) + "+/." + parts[1] + "." + parts[2],
		"header not object":  b64([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2],
		"payload not object": parts[0] + "." + b64([]byte(`"x"`)) + "." + parts[2],
		"payload not JSON":   parts[0] + "." + b64([]byte(`{iss}`)) + "." + parts[2],
		"empty header":       "." + parts[1] + "." + parts[2],
		"alg number":         b64([]byte(`{"alg":256}`)) + "." + parts[1] + "." + parts[2],
		"alg absent":         b64([]byte(`{"kid":"rsa1"}`)) + "." + parts[1] + "." + parts[2],
		"bad signature b64":  parts[0] + "." + parts[1] + ".a*b",
		"dots only":          "..",
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) { expectReason(t, p, tok, TokenMalformed) })
	}
	t.Run("issuer before signature", func(t *testing.T) {
		// Contract order: an unknown iss is issuer_mismatch even when the
		// signature is garbage.
		pl := payloadJSON(t, withClaims(func(m map[string]any) { m["iss"] = "https://other.example" }))
		expectReason(t, p, unsigned(`{"alg":"RS256","kid":"rsa1"}`, pl, "AAAA"), IssuerMismatch)
	})
	t.Run("ed25519 key used for another alg", func(t *testing.T) {
		s := signer{"EdDSA", fixtures().ed, "ed1"}
		expectReason(t, p, s.token(t, map[string]any{"alg": "ES256"}, claims()), AlgNotAllowed)
	})
}

func TestEmptyKidIsNoKid(t *testing.T) {
	p := attackPolicy(t)
	k := fixtures()
	if d := p.Decide(bearer(signer{"ES256", k.ec, ""}.token(t, map[string]any{"kid": ""}, claims()))); !d.Allowed {
		t.Errorf("empty kid: %+v", d)
	}
}

func TestNilRequest(t *testing.T) {
	if d := attackPolicy(t).Decide(nil); d.Reason != TokenMissing {
		t.Errorf("nil request: %+v", d)
	}
}

func TestPolicyNotFoundDecision(t *testing.T) {
	d := PolicyNotFoundDecision("no policy shop/x")
	if d.Allowed || d.Status != 403 || d.Reason != PolicyNotFound || d.WWWAuthenticate != "" {
		t.Errorf("decision = %+v", d)
	}
}
