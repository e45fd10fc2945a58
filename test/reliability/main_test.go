package reliability

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

// binary is claimguard, built once for the package: every scenario runs the real process the
// way users and the Deployment do.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "claimguard-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.BuildClaimguard(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// idp is the identity provider of every scenario; its keys are generated once per test binary.
var idp = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer("https://idp.example.com/realms/shop")
	if err != nil {
		panic(err)
	}
	return iss
})
