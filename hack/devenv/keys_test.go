package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// TestDevKeyAndTokens checks that the dev key is created once (private, mode 0600) and then
// reused, and that the minted tokens verify with the public key set the dev policy inlines
// and carry the times their answers depend on.
func TestDevKeyAndTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dev-key.json")
	key, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("dev key mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := loadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if key.KeyID() == "" || again.KeyID() != key.KeyID() {
		t.Errorf("kid %q then %q: the key was not reused", key.KeyID(), again.KeyID())
	}
	jwks, err := publicJWKS(key)
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse([]byte(jwks))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := set.Key(0)
	if _, ok := pub.(jwk.ECDSAPublicKey); !ok || set.Len() != 1 {
		t.Fatalf("the inline key set must hold one public EC key, got %s", jwks)
	}

	now := time.Now()
	if err := mintTokens(again, filepath.Join(dir, "tokens"), now); err != nil {
		t.Fatal(err)
	}
	for _, dt := range devTokens {
		data, err := os.ReadFile(filepath.Join(dir, "tokens", dt.file))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Parse(data, jwt.WithKeySet(set), jwt.WithValidate(false))
		if err != nil {
			t.Errorf("%s does not verify with the inline key set: %v", dt.file, err)
			continue
		}
		expired := tok.Expiration().Before(now)
		if expired != (dt.reason == "token_expired") || tok.Issuer() != devIssuer || tok.Audience()[0] != devAudience {
			t.Errorf("%s: exp %v (expired %v), iss %q, aud %v", dt.file, tok.Expiration(), expired, tok.Issuer(), tok.Audience())
		}
	}
}

func TestDisplay(t *testing.T) {
	for _, tc := range []struct{ root, path, want string }{
		{"/repo", "/repo/.dev/kubeconfig", ".dev/kubeconfig"},
		{"/repo", "/tmp/dev/kubeconfig", "/tmp/dev/kubeconfig"},
		{"/repo", "/repository/x", "/repository/x"},
	} {
		if got := display(tc.root, tc.path); got != tc.want {
			t.Errorf("display(%q, %q) = %q, want %q", tc.root, tc.path, got, tc.want)
		}
	}
}
