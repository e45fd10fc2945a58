package reliability

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

// buildDir holds the claimguard binary of this test binary.
var buildDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	buildDir, err = os.MkdirTemp("", "claimguard-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(buildDir)
	return m.Run()
}

// claimguardBinary builds claimguard once, on first use, so that the in-process scenarios
// (the token cache, the engine under bad input) run without paying for the build: every
// process scenario runs the real binary the way users and the Deployment do.
var claimguardBinary = sync.OnceValues(func() (string, error) {
	return testenv.BuildClaimguard(buildDir)
})

// binary returns the claimguard binary, failing the test when it cannot be built.
func binary(t *testing.T) string {
	t.Helper()
	bin, err := claimguardBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// idp is the identity provider of every scenario; its keys are generated once per test binary.
var idp = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer("https://idp.example.com/realms/shop")
	if err != nil {
		panic(err)
	}
	return iss
})
