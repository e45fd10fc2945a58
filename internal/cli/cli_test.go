package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/claimguard/claimguard/internal/cli"
	"github.com/claimguard/claimguard/internal/testenv"
)

var (
	env *testenv.Env
	// binary is claimguard built once for the package, so the tests run the
	// real process the way users and the Deployment do.
	binary string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "claimguard-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binary, err = testenv.BuildClaimguard(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := testenv.Main(m, testenv.Options{}, func(e *testenv.Env) { env = e })
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func run(args ...string) (stdout, stderr string, code int) {
	var out, errOut bytes.Buffer
	code = cli.Execute(args, &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestHelpListsSubcommands(t *testing.T) {
	out, _, code := run("--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, sub := range []string{"manager"} {
		if !strings.Contains(out, "\n  "+sub+" ") {
			t.Errorf("--help does not list %q:\n%s", sub, out)
		}
	}
}

func TestBadInputIsOneLine(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", []string{"manager", "--bogus"}, "unknown flag: --bogus"},
		{"bad address", []string{"manager", "--metrics-bind-address", "nowhere"}, "--metrics-bind-address"},
		{"bad duration", []string{"manager", "--leader-election-lease-duration", "soon"}, "leader-election-lease-duration"},
		{"inconsistent leader election", []string{"manager", "--leader-election-lease-duration", "1s"}, "lease-duration > renew-deadline"},
		{"stray argument", []string{"manager", "extra"}, "unknown command \"extra\""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(tc.args...)
			if code == 0 {
				t.Fatalf("exit 0 for bad input; stdout %q", out)
			}
			if n := strings.Count(strings.TrimRight(errOut, "\n"), "\n"); n != 0 {
				t.Errorf("want one line on stderr, got %d:\n%s", n+1, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say %q", errOut, tc.want)
			}
		})
	}
}

func TestManagerWithoutClusterFailsClearly(t *testing.T) {
	cmd := exec.Command(binary, "manager", "--kubeconfig", filepath.Join(t.TempDir(), "missing"))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if err == nil {
		t.Fatal("manager started without a cluster")
	}
	if !strings.Contains(errOut.String(), "--kubeconfig") {
		t.Errorf("stderr does not name the kubeconfig: %s", errOut.String())
	}
}

func waitHTTP(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(body)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 30s (last error %v)", url, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestManagerProcess runs `claimguard manager` against the real API server:
// probes and metrics answer, it takes the leader-election Lease, and SIGTERM
// stops it cleanly and releases the Lease.
func TestManagerProcess(t *testing.T) {
	metrics, probes, auth, webhooks := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	leaseName := "claimguard-test-lease"
	cmd := exec.Command(binary, "manager",
		"--kubeconfig", env.Kubeconfig,
		"--metrics-bind-address", metrics,
		"--health-probe-bind-address", probes,
		"--auth-bind-address", auth,
		"--leader-election-namespace", "default",
		"--leader-election-id", leaseName,
		// No webhook configurations are installed here: the certificate is still issued
		// (readiness waits for it) and injected once they appear.
		"--webhook-bind-address", webhooks,
		"--webhook-service-namespace", "default",
		"--webhook-cert-secret", "claimguard-test-process-cert",
	)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	waitHTTP(t, "http://"+probes+"/healthz", http.StatusOK)
	waitHTTP(t, "http://"+probes+"/readyz", http.StatusOK)
	if body := waitHTTP(t, "http://"+metrics+"/metrics", http.StatusOK); !strings.Contains(body, "leader_election_master_status") {
		t.Errorf("/metrics lacks the leader election metric")
	}

	ctx := context.Background()
	lease := &coordinationv1.Lease{}
	if _, err := testenv.Poll(30*time.Second, func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: leaseName}, lease); err != nil {
			return err
		}
		if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "" {
			return errors.New("no holder")
		}
		return nil
	}); err != nil {
		t.Fatalf("manager did not take the Lease: %v\n%s", err, logs.String())
	}

	stopManager(t, cmd, logs, exited)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: leaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Errorf("Lease still held by %q after a clean stop", *lease.Spec.HolderIdentity)
	}
}
