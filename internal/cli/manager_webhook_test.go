package cli_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/claimguard/claimguard/internal/cli"
	"github.com/claimguard/claimguard/internal/testenv"
)

// installWebhookConfigs installs config/webhook with every clientConfig turned into
// https://<addr><path> and no caBundle: claimguard injects it.
func installWebhookConfigs(t *testing.T, addr string) {
	t.Helper()
	objs, err := testenv.WebhookConfigs(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, obj := range objs {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(ctx, obj) })
	}
}

// startManager runs `claimguard manager` with self-managed webhook certificates in namespace ns
// and waits until it is ready.
func startManager(t *testing.T, ns, webhooks string) (*exec.Cmd, *testenv.SyncBuffer, chan error) {
	t.Helper()
	probes := testenv.FreeAddr(t)
	cmd := exec.Command(binary, "manager",
		"--kubeconfig", env.Kubeconfig,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", probes,
		"--auth-bind-address", testenv.FreeAddr(t),
		"--leader-election-namespace", ns,
		"--webhook-bind-address", webhooks,
		"--webhook-service-namespace", ns,
		"--webhook-cert-extra-sans", "127.0.0.1,localhost",
		"--shutdown-delay", "0s",
	)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	waitHTTP(t, "http://"+probes+"/readyz", http.StatusOK)
	return cmd, logs, exited
}

func stopManager(t *testing.T, cmd *exec.Cmd, logs *testenv.SyncBuffer, exited chan error) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("manager exited with %v:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("manager did not stop:\n%s", logs.String())
	}
}

// TestManagerWebhooks runs the manager binary with its defaults for certificates
// (self-managed) against the generated webhook configurations: it issues its CA and serving
// certificate into a Secret, injects the CA bundle, and the API server's calls reach it (a
// policy that does not compile is refused with the compile error). A restarted manager serves
// from the same Secret, with the same CA.
func TestManagerWebhooks(t *testing.T) {
	ctx := context.Background()
	ns := "cg-cli-webhooks"
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	webhooks := testenv.FreeAddr(t)
	installWebhookConfigs(t, webhooks)
	bad := `apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {name: bad, namespace: ` + ns + `}
spec:
  issuers: [{issuer: "https://idp.example.com", jwks: {uri: "https://idp.example.com/certs"}}]
  rules: [{expression: "claims.exp -"}]
`
	refused := func() {
		t.Helper()
		cmd := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig, "apply", "-f", "-")
		cmd.Stdin = strings.NewReader(bad)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `spec.rules[0].expression: Invalid value: "claims.exp -": does not compile`) {
			t.Fatalf("kubectl apply of a policy that does not compile: %v\n%s", err, out)
		}
	}

	cmd, logs, exited := startManager(t, ns, webhooks)
	refused()
	secret := func() *corev1.Secret {
		s := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: cli.NewManagerOptions().Webhook.Secret}, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	bundle := func() []byte {
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "claimguard-validating-webhook-configuration"}, v); err != nil {
			t.Fatal(err)
		}
		return v.Webhooks[0].ClientConfig.CABundle
	}
	before, injected := secret(), bundle()
	if len(injected) == 0 || !bytes.Equal(injected, before.Data["ca-bundle.crt"]) {
		t.Fatalf("injected caBundle (%d bytes) is not the Secret's bundle", len(injected))
	}
	stopManager(t, cmd, logs, exited)

	cmd, logs, exited = startManager(t, ns, webhooks)
	refused()
	after := secret()
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt"} {
		if !bytes.Equal(before.Data[k], after.Data[k]) {
			t.Errorf("%s changed across the restart", k)
		}
	}
	if !bytes.Equal(injected, bundle()) {
		t.Error("the injected bundle changed across the restart")
	}
	stopManager(t, cmd, logs, exited)
}

func TestManagerWebhookFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cert mode", []string{"--cert-mode", "manual"}, `--cert-mode "manual": must be self-managed or external`},
		{"external without a directory", []string{"--cert-mode", "external"}, "--cert-mode=external needs --webhook-cert-dir"},
		{"certificate outlives its CA", []string{"--webhook-cert-lifetime", "9000h"}, "--webhook-cert-lifetime 9000h0m0s must not exceed --webhook-ca-lifetime"},
		{"propagation longer than the renewal window", []string{"--webhook-ca-propagation-delay", "1000h"}, "--webhook-ca-propagation-delay"},
		{"bad SAN", []string{"--webhook-cert-extra-sans", "not a name"}, `--webhook-cert-extra-sans "not a name": neither an IP address nor a DNS name`},
		{"bad address", []string{"--webhook-bind-address", "nowhere"}, "--webhook-bind-address"},
		{"no service account", []string{"--service-account-name", ""}, "--service-account-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(append([]string{"manager"}, tc.args...)...)
			if code != cli.ExitUsage || !strings.Contains(errOut, tc.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit %d and one line saying %q", code, errOut, cli.ExitUsage, tc.want)
			}
		})
	}
	// Disabled webhooks need none of the certificate flags to make sense.
	o := cli.NewManagerOptions()
	o.Webhook.Addr, o.Webhook.CertMode = "0", "manual"
	if err := o.Validate(); err != nil {
		t.Errorf("--webhook-bind-address=0 with other webhook flags: %v", err)
	}
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 into dir as tls.crt and
// tls.key, the layout cert-manager mounts, and returns its DER.
func writeServingCert(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cert-manager-issued"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{"tls.crt": {Type: "CERTIFICATE", Bytes: der}, "tls.key": {Type: "PRIVATE KEY", Bytes: pkcs8}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return der
}

// TestManagerExternalCertificates runs the manager with --cert-mode=external: it serves the
// certificate found in --webhook-cert-dir (as cert-manager mounts it), writes no Secret of its
// own, and offers HTTP/1.1 only.
func TestManagerExternalCertificates(t *testing.T) {
	dir := t.TempDir()
	der := writeServingCert(t, dir)
	probes, webhooks := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cmd := exec.Command(binary, "manager",
		"--kubeconfig", env.Kubeconfig,
		"--leader-elect=false",
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", probes,
		"--auth-bind-address", testenv.FreeAddr(t),
		"--webhook-bind-address", webhooks,
		"--cert-mode", "external",
		"--webhook-cert-dir", dir,
		"--webhook-service-namespace", "default",
		"--webhook-cert-secret", "must-not-be-created",
		"--shutdown-delay", "0s",
	)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer stopManager(t, cmd, logs, exited)
	waitHTTP(t, "http://"+probes+"/readyz", http.StatusOK)

	pool := x509.NewCertPool()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)
	conn, err := tls.Dial("tcp", webhooks, &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("TLS to the webhook server with the mounted certificate: %v\n%s", err, logs.String())
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Error("the webhook server negotiated HTTP/2")
	}
	err = env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "must-not-be-created"}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("external mode and a certificate Secret: %v, want NotFound", err)
	}
}
