// Command floor is the HTTP floor of the forward-auth benchmark: a Go
// net/http server that answers every request 200 with an empty body and does
// nothing else, so its requests/s is what the machine, net/http and wrk allow
// before any token work.
//
// With -verify JWKS it is the measured limit instead: the same server doing
// the bare signature check of the bearer token and nothing else (no JSON, no
// claims, no cache, no metrics): it hashes the signing input and verifies the
// signature with the standard library, RSA PKCS#1 v1.5 when the signature is
// as long as the RSA modulus, ECDSA P-256 when it is 64 bytes, and answers
// 200 or 401. What claimguard adds beyond that is its own cost.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"flag"
	"log"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18000", "listen address")
	verify := flag.String("verify", "", "JWKS file: verify each bearer token's signature with its RSA or P-256 key")
	flag.Parse()
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	if *verify != "" {
		v, err := loadVerifier(*verify)
		if err != nil {
			log.Fatal(err)
		}
		handler = v.serveHTTP
	}
	srv := &http.Server{
		Addr:              *listen,
		ReadHeaderTimeout: 5 * time.Second,
		Handler:           handler,
	}
	log.Fatal(srv.ListenAndServe())
}

// verifier holds one RSA and one P-256 public key.
type verifier struct {
	rsa *rsa.PublicKey
	ec  *ecdsa.PublicKey
}

func loadVerifier(path string) (*verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, err
	}
	v := &verifier{}
	for i := range set.Len() {
		k, _ := set.Key(i)
		var raw any
		if err := k.Raw(&raw); err != nil {
			return nil, err
		}
		switch pk := raw.(type) {
		case *rsa.PublicKey:
			v.rsa = pk
		case *ecdsa.PublicKey:
			v.ec = pk
		}
	}
	return v, nil
}

func (v *verifier) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if v.check(r.Header.Get("Authorization")) {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusUnauthorized)
}

func (v *verifier) check(auth string) bool {
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return false
	}
	dot := strings.LastIndexByte(tok, '.')
	if dot < 0 {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(tok[:dot]))
	switch {
	case v.rsa != nil && len(sig) == v.rsa.Size():
		return rsa.VerifyPKCS1v15(v.rsa, crypto.SHA256, sum[:], sig) == nil
	case v.ec != nil && len(sig) == 64:
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(v.ec, sum[:], r, s)
	}
	return false
}
