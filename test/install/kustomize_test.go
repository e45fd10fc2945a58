package install

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/claimguard/claimguard/internal/cli"
)

// managerDefaults are the manager's defaults for the flags whose names config/ relies on,
// in a pod of claimguard-system (POD_NAMESPACE), as the Deployment runs it.
func managerDefaults(t *testing.T) map[string]string {
	t.Helper()
	t.Setenv("POD_NAMESPACE", "claimguard-system")
	o := cli.NewManagerOptions()
	return map[string]string{
		"--auth-service-name":                o.Wiring.AuthServiceName,
		"--auth-service-namespace":           o.Wiring.AuthServiceNamespace,
		"--auth-service-port":                "8443",
		"--auth-bind-address":                o.AuthAddr,
		"--health-probe-bind-address":        o.ProbeAddr,
		"--webhook-bind-address":             o.Webhook.Addr,
		"--webhook-service-name":             o.Webhook.ServiceName,
		"--cert-mode":                        o.Webhook.CertMode,
		"--validating-webhook-configuration": o.Webhook.ValidatingConfiguration,
		"--mutating-webhook-configuration":   o.Webhook.MutatingConfiguration,
		// The pods' service account comes from the downward API (POD_SERVICE_ACCOUNT).
		"--service-account-name": "",
	}
}

// copyConfig copies config/ into a temporary directory, so a test can change a
// kustomization the way a user would.
func copyConfig(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "config")
	err := filepath.WalkDir(filepath.Join(root, "config"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(filepath.Join(root, "config"), path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// commentedComponents matches the commented-out options of config/default.
var commentedComponents = regexp.MustCompile(`(?m)^#(components:|- \.\./[a-z-]+)$`)

// TestKustomizeDefault applies config/default to the real API server as a server-side dry
// run, into a namespace that enforces the restricted Pod Security Standard, and checks that
// its objects agree with each other and with the manager's flags. Then the same with every
// option of config/default uncommented (cert-manager, Prometheus, NetworkPolicy).
func TestKustomizeDefault(t *testing.T) {
	createNamespace(t, "claimguard-system")
	// A pod template that breaks the standard draws a warning here, so its absence below
	// means something.
	const privileged = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"privileged","namespace":"claimguard-system"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"x","securityContext":{"privileged":true}}]}}}}`
	privFile := filepath.Join(t.TempDir(), "privileged.json")
	if err := os.WriteFile(privFile, []byte(privileged), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := kubectl(t, "apply", "--dry-run=server", "-f", privFile); err != nil || !strings.Contains(errOut, "would violate PodSecurity") {
		t.Fatalf("a privileged Deployment drew no PodSecurity warning (err %v): %s", err, errOut)
	}

	options := copyConfig(t)
	defaultFile := filepath.Join(options, "default", "kustomization.yaml")
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	uncommented := commentedComponents.ReplaceAllString(string(data), "$1")
	if n := len(commentedComponents.FindAllString(string(data), -1)); n != 4 {
		t.Fatalf("config/default has %d commented options (components: and three), want 4", n)
	}
	if err := os.WriteFile(defaultFile, []byte(uncommented), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, dir   string
		certManager bool
	}{
		{"default", filepath.Join(root, "config", "default"), false},
		{"every option", filepath.Join(options, "default"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			built, errOut, err := runCmd(t, "kubectl", "kustomize", tc.dir)
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v\n%s", tc.dir, err, errOut)
			}
			objs := decodeObjects(t, built)
			for _, o := range objs {
				if ns := o.GetNamespace(); ns != "" && ns != "claimguard-system" {
					t.Errorf("%s %s is in namespace %s", o.GetKind(), o.GetName(), ns)
				}
			}
			in := newInstallation(t, objs, "claimguard-controller-manager")
			in.checkConsistent(t, managerDefaults(t), true)
			in.checkFlagsAccepted(t)
			find(t, objs, "CustomResourceDefinition", crdName)
			find(t, objs, "PodDisruptionBudget", "")
			if got := *in.deployment.Spec.Replicas; got < 2 {
				t.Errorf("%d replicas; forward-auth fails closed while none answers, run two", got)
			}
			if tc.certManager {
				if in.flag("--cert-mode", "") != "external" || in.flag("--webhook-cert-dir", "") == "" {
					t.Errorf("with cert-manager the manager runs with %v", in.flags)
				}
				for _, kind := range []string{"Certificate", "Issuer", "ServiceMonitor", "NetworkPolicy"} {
					find(t, objs, kind, "")
				}
				cert := find(t, objs, "Certificate", "")
				for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
					o := find(t, objs, kind, "")
					if got, want := o.GetAnnotations()["cert-manager.io/inject-ca-from"], cert.GetNamespace()+"/"+cert.GetName(); got != want {
						t.Errorf("%s inject-ca-from %q, want %q", kind, got, want)
					}
				}
				for _, o := range objs {
					if o.GetKind() == "Role" || o.GetKind() == "RoleBinding" {
						t.Errorf("with cert-manager config/ keeps %s %s, which only the self-managed certificate needs", o.GetKind(), o.GetName())
					}
				}
			} else {
				find(t, objs, "Role", "claimguard-manager-role")
			}

			out, errOut, err := kubectl(t, "apply", "-k", tc.dir, "--dry-run=server")
			if err != nil {
				t.Fatalf("kubectl apply -k %s --dry-run=server: %v\n%s%s", tc.dir, err, out, errOut)
			}
			checkNoPodSecurityWarnings(t, errOut)
			if n := strings.Count(out, "(server dry run)"); n != len(objs) {
				t.Errorf("the dry run reports %d objects, the build has %d:\n%s", n, len(objs), out)
			}
		})
	}
}
