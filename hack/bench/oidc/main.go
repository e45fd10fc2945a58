// Command oidc is a tiny OpenID Connect issuer for the benchmark: it serves
// the discovery document and the JWKS that hack/bench/mint wrote, so
// oauth2-proxy can verify the same tokens claimguard verifies. It issues
// nothing itself.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18001", "listen address")
	issuer := flag.String("issuer", "http://127.0.0.1:18001", "issuer URL (must match the tokens' iss)")
	jwksFile := flag.String("jwks", "", "JWKS document to serve")
	flag.Parse()
	jwks, err := os.ReadFile(*jwksFile)
	if err != nil {
		log.Fatal(err)
	}
	discovery, err := json.Marshal(map[string]any{
		"issuer":                                *issuer,
		"jwks_uri":                              *issuer + "/jwks",
		"authorization_endpoint":                *issuer + "/authorize",
		"token_endpoint":                        *issuer + "/token",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	serve := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "max-age=3600")
			_, _ = w.Write(body)
		}
	}
	mux.Handle("/.well-known/openid-configuration", serve(discovery))
	mux.Handle("/jwks", serve(jwks))
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
