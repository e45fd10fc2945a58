package keys

import (
	"crypto/ecdsa"
	"crypto/rand"
	"errors"
	"math/big"
	"testing"
)

const testInput = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"

func TestVerifyEveryAlgorithm(t *testing.T) {
	input := []byte(testInput)
	for _, alg := range Algorithms {
		t.Run(alg, func(t *testing.T) {
			priv := privFor(alg)
			// Both a key bound to alg and one that serves alg through its type verify.
			for _, bound := range []string{alg, ""} {
				key := mustKey(t, "k", bound, publicOf(priv))
				sig := sign(t, alg, priv, input)
				if err := VerifySignature(alg, key, input, sig); err != nil {
					t.Fatalf("valid signature (key alg %q): %v", bound, err)
				}
				tampered := append([]byte(nil), sig...)
				tampered[len(tampered)/2] ^= 0x01
				if err := VerifySignature(alg, key, input, tampered); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("tampered signature: err = %v, want ErrSignatureInvalid", err)
				}
				otherInput := append([]byte(nil), input...)
				otherInput[len(otherInput)-1] ^= 0x01
				if err := VerifySignature(alg, key, otherInput, sig); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("tampered input: err = %v, want ErrSignatureInvalid", err)
				}
				if err := VerifySignature(alg, key, input, nil); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("empty signature: err = %v, want ErrSignatureInvalid", err)
				}
				if err := VerifySignature(alg, key, input, sig[:len(sig)-1]); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("short signature: err = %v, want ErrSignatureInvalid", err)
				}
				if err := VerifySignature(alg, key, input, append(append([]byte(nil), sig...), 0)); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("long signature: err = %v, want ErrSignatureInvalid", err)
				}
				if err := VerifySignature(alg, key, input, append([]byte{0}, sig...)); !errors.Is(err, ErrSignatureInvalid) {
					t.Errorf("zero-prefixed signature: err = %v, want ErrSignatureInvalid", err)
				}
			}
		})
	}
}

func TestVerifyWrongKeyOfSameType(t *testing.T) {
	input := []byte(testInput)
	sig := sign(t, "RS256", testRSA(), input)
	other := mustKey(t, "k", "", &testRSA2().PublicKey)
	if err := VerifySignature("RS256", other, input, sig); !errors.Is(err, ErrSignatureInvalid) {
		t.Errorf("another RSA key: err = %v, want ErrSignatureInvalid", err)
	}
	// PKCS#1 v1.5 and PSS signatures are not interchangeable.
	rsaKey := mustKey(t, "k", "", &testRSA().PublicKey)
	if err := VerifySignature("PS256", rsaKey, input, sig); !errors.Is(err, ErrSignatureInvalid) {
		t.Errorf("RS256 signature as PS256: err = %v, want ErrSignatureInvalid", err)
	}
	if err := VerifySignature("RS384", rsaKey, input, sig); !errors.Is(err, ErrSignatureInvalid) {
		t.Errorf("RS256 signature as RS384: err = %v, want ErrSignatureInvalid", err)
	}
}

func TestVerifyAlgorithmMismatch(t *testing.T) {
	input := []byte(testInput)
	tests := []struct {
		name string
		alg  string
		key  *Key
		want error
	}{
		{"bound key, other alg of its type", "RS384", mustKey(t, "k", "RS256", &testRSA().PublicKey), ErrAlgorithmMismatch},
		{"RSA key with ES256", "ES256", mustKey(t, "k", "", &testRSA().PublicKey), ErrAlgorithmMismatch},
		{"P-256 key with ES384", "ES384", mustKey(t, "k", "", &testP256().PublicKey), ErrAlgorithmMismatch},
		{"P-384 key with ES256", "ES256", mustKey(t, "k", "", &testP384().PublicKey), ErrAlgorithmMismatch},
		{"P-521 key with ES384", "ES384", mustKey(t, "k", "", &testP521().PublicKey), ErrAlgorithmMismatch},
		{"Ed25519 key with ES256", "ES256", mustKey(t, "k", "", testEd().Public()), ErrAlgorithmMismatch},
		{"oct key with RS256", "RS256", mustKey(t, "k", "", testSecret()), ErrAlgorithmMismatch},
		{"32-byte oct key with HS512", "HS512", mustKey(t, "k", "", testSecret()[:32]), ErrAlgorithmMismatch},
		{"nil key", "RS256", nil, ErrAlgorithmMismatch},
		{"none", "none", mustKey(t, "k", "", &testRSA().PublicKey), ErrUnsupportedAlgorithm},
		{"None", "None", mustKey(t, "k", "", &testRSA().PublicKey), ErrUnsupportedAlgorithm},
		{"empty alg", "", mustKey(t, "k", "", &testRSA().PublicKey), ErrUnsupportedAlgorithm},
		{"lowercase rs256", "rs256", mustKey(t, "k", "", &testRSA().PublicKey), ErrUnsupportedAlgorithm},
		{"ES256K", "ES256K", mustKey(t, "k", "", &testP256().PublicKey), ErrUnsupportedAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := VerifySignature(tc.alg, tc.key, input, []byte("sig")); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.key.Fits(tc.alg) {
				t.Errorf("Fits(%q) = true for a key that cannot serve it", tc.alg)
			}
		})
	}
}

// TestVerifyHMACKeyConfusion is the classic attack: sign HS256 with the bytes of the RSA public key
// (as a JWK or PEM would hold them). An RSA key never fits HS*, and an HS key built from the public
// bytes can only come from a secretRef.
func TestVerifyHMACKeyConfusion(t *testing.T) {
	input := []byte(testInput)
	for _, pubBytes := range [][]byte{testRSA().N.Bytes(), []byte(b64(testRSA().N.Bytes()))} {
		forged := sign(t, "HS256", pubBytes, input)
		rsaKey := mustKey(t, "k", "", &testRSA().PublicKey)
		if err := VerifySignature("HS256", rsaKey, input, forged); !errors.Is(err, ErrAlgorithmMismatch) {
			t.Errorf("HS256 with the RSA key: err = %v, want ErrAlgorithmMismatch", err)
		}
		if rsaKey.Fits("HS256") {
			t.Error("an RSA key fits HS256")
		}
	}
	// The same through parsing: an inline/remote set never yields an oct key.
	doc := jwks(t, with(jwkOf(t, testRSA().N.Bytes()), "alg", "HS256"))
	if _, err := ParseStrict(doc, ParseOptions{Algorithms: []string{"HS256"}}); err == nil {
		t.Error("ParseStrict accepted an oct key without AllowSymmetric")
	}
	// And an EC key's coordinates (Wycheproof's aesKeyFromEcVerificationKeyBytes).
	ecKey := mustKey(t, "k", "ES256", &testP256().PublicKey)
	raw, _ := testP256().PublicKey.Bytes()
	if err := VerifySignature("HS256", ecKey, input, sign(t, "HS256", raw, input)); !errors.Is(err, ErrAlgorithmMismatch) {
		t.Errorf("HS256 with the EC key: err = %v, want ErrAlgorithmMismatch", err)
	}
}

// TestVerifyECDSASignatureRange covers CVE-2022-21449 (r = s = 0 accepted by a broken verifier)
// and its relatives: r or s zero, equal to N, or above it.
func TestVerifyECDSASignatureRange(t *testing.T) {
	input := []byte(testInput)
	for _, tc := range []struct {
		alg  string
		priv *ecdsa.PrivateKey
	}{{"ES256", testP256()}, {"ES384", testP384()}, {"ES512", testP521()}} {
		key := mustKey(t, "k", tc.alg, &tc.priv.PublicKey)
		size := (tc.priv.Curve.Params().BitSize + 7) / 8
		n := tc.priv.Curve.Params().N
		valid := sign(t, tc.alg, tc.priv, input)
		r, s := valid[:size], valid[size:]
		nBytes := n.FillBytes(make([]byte, size))
		zero := make([]byte, size)
		cases := map[string][]byte{
			"r=0,s=0":   append(append([]byte(nil), zero...), zero...),
			"r=0":       append(append([]byte(nil), zero...), s...),
			"s=0":       append(append([]byte(nil), r...), zero...),
			"r=N":       append(append([]byte(nil), nBytes...), s...),
			"s=N":       append(append([]byte(nil), r...), nBytes...),
			"r=N+r":     append(addN(n, r, size), s...),
			"s=N+s":     append(append([]byte(nil), r...), addN(n, s, size)...),
			"all 0xff":  bytesOf(0xff, 2*size),
			"ASN.1 DER": mustASN1(t, tc.priv, input, tc.alg),
		}
		for name, sig := range cases {
			if err := VerifySignature(tc.alg, key, input, sig); !errors.Is(err, ErrSignatureInvalid) {
				t.Errorf("%s %s: err = %v, want ErrSignatureInvalid", tc.alg, name, err)
			}
		}
		if err := VerifySignature(tc.alg, key, input, valid); err != nil {
			t.Errorf("%s valid signature: %v", tc.alg, err)
		}
	}
}

// addN returns v+N when it still fits in size bytes (a signature that is valid modulo N but out
// of range), else v+N truncated, which is out of range too.
func addN(n *big.Int, v []byte, size int) []byte {
	out := make([]byte, size)
	nb := n.Bytes()
	carry := 0
	for i := size - 1; i >= 0; i-- {
		j := i - (size - len(nb))
		sum := int(v[i]) + carry
		if j >= 0 {
			sum += int(nb[j])
		}
		out[i] = byte(sum)
		carry = sum >> 8
	}
	if carry != 0 {
		for i := range out {
			out[i] = 0xff
		}
	}
	return out
}

func bytesOf(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// mustASN1 returns a DER signature, the format JWS does not use: it must not verify.
func mustASN1(t *testing.T, priv *ecdsa.PrivateKey, input []byte, alg string) []byte {
	t.Helper()
	info, _ := lookupAlg(alg)
	h := info.hash.New()
	h.Write(input)
	der, err := ecdsa.SignASN1(rand.Reader, priv, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestVerifyRSASignatureAsLargeAsModulus(t *testing.T) {
	input := []byte(testInput)
	key := mustKey(t, "k", "RS256", &testRSA().PublicKey)
	n := testRSA().N.FillBytes(make([]byte, testRSA().Size()))
	if err := VerifySignature("RS256", key, input, n); !errors.Is(err, ErrSignatureInvalid) {
		t.Errorf("signature = N: err = %v, want ErrSignatureInvalid", err)
	}
	if err := VerifySignature("RS256", key, input, make([]byte, testRSA().Size())); !errors.Is(err, ErrSignatureInvalid) {
		t.Errorf("signature = 0: err = %v, want ErrSignatureInvalid", err)
	}
}

func TestVerifyHandBuiltKey(t *testing.T) {
	// A Key literal without the parse-time precomputation still verifies (the HMAC path falls
	// back to hmac.New), so other packages' tests may build keys directly.
	input := []byte(testInput)
	k := &Key{KID: "h", Type: Oct, Public: testSecret()}
	if err := VerifySignature("HS256", k, input, sign(t, "HS256", testSecret(), input)); err != nil {
		t.Errorf("hand-built oct key: %v", err)
	}
	bad := &Key{Type: ECP256, Public: &testRSA().PublicKey}
	if err := VerifySignature("ES256", bad, input, make([]byte, 64)); !errors.Is(err, ErrAlgorithmMismatch) {
		t.Errorf("type/public mismatch: err = %v, want ErrAlgorithmMismatch", err)
	}
}
