package certs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/claimguard/claimguard/internal/certs"
	"github.com/claimguard/claimguard/internal/testenv"
)

// admit asks the API server for a dry-run ConfigMap in the guarded namespace, which calls the
// webhook; deny makes the webhook refuse it.
func (f *fixture) admit(deny bool) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.guardedNS, GenerateName: "probe-"}}
	if deny {
		cm.Labels = map[string]string{"deny": "true"}
	}
	return env.Client.Create(context.Background(), cm, client.DryRunAll)
}

func (f *fixture) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	sec, err := cs.CoreV1().Secrets(f.secretNS).Get(context.Background(), f.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func (f *fixture) injected(t *testing.T) []byte {
	t.Helper()
	cfg, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), f.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Webhooks[0].ClientConfig.CABundle
}

func servedBy(t *testing.T, s *certs.Source) []byte {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Certificate[0]
}

// TestIssueInjectServe installs the webhook with no caBundle and nothing serving: calls fail
// (failurePolicy Fail). The leader's rotator writes the Secret and injects the bundle, the gated
// server starts once the certificate is loaded, and the API server's calls succeed; a replica
// that is not the leader serves the same certificate from the Secret.
func TestIssueInjectServe(t *testing.T) {
	f := newFixture(t)
	// The API server picks a new webhook configuration up from its own informer, a moment
	// after the create: until then nothing calls the webhook. Once it does, with nothing
	// serving, failurePolicy Fail refuses.
	testenv.Eventually(t, 10*time.Second, "a refusal while no webhook server runs (failurePolicy Fail)", func() error {
		if err := f.admit(false); err == nil {
			return errors.New("admitted")
		}
		return nil
	})
	leader := f.start(t, f.options(), true)
	testenv.Eventually(t, 20*time.Second, "admission through the webhook", func() error { return f.admit(false) })
	if err := f.admit(true); err == nil || !strings.Contains(err.Error(), "denied by the test webhook") {
		t.Fatalf("the webhook was not asked: %v", err)
	}

	sec := f.secret(t)
	if sec.Type != corev1.SecretTypeTLS {
		t.Errorf("Secret type %q, want %q", sec.Type, corev1.SecretTypeTLS)
	}
	for _, k := range []string{certs.KeyTLSCert, certs.KeyTLSKey, certs.KeyCACert, certs.KeyCAKey, certs.KeyCABundle} {
		if len(sec.Data[k]) == 0 {
			t.Errorf("Secret lacks %s", k)
		}
	}
	if !bytes.Equal(f.injected(t), sec.Data[certs.KeyCABundle]) {
		t.Error("the injected caBundle differs from the Secret's bundle")
	}

	follower := certs.NewSource(cs, f.secretNS, f.name, logr.Discard())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = follower.Start(ctx) }()
	if err := follower.WaitReady(withTimeout(t, 10*time.Second)); err != nil {
		t.Fatal("the follower never loaded the certificate:", err)
	}
	if !bytes.Equal(servedBy(t, follower), servedBy(t, leader.source)) {
		t.Error("the follower serves another certificate than the leader")
	}
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRestartKeepsCA stops the only replica (admission calls then fail: failurePolicy Fail) and
// starts a new one: it serves from the Secret at once, with the same CA, bundle and serving
// certificate, and issues nothing.
func TestRestartKeepsCA(t *testing.T) {
	f := newFixture(t)
	first := f.start(t, f.options(), true)
	testenv.Eventually(t, 20*time.Second, "admission through the webhook", func() error { return f.admit(false) })
	before := f.secret(t)
	bundle := f.injected(t)
	first.stop()
	if err := f.admit(false); err == nil {
		t.Error("admitted with the webhook server stopped")
	}

	f.start(t, f.options(), true)
	testenv.Eventually(t, 20*time.Second, "admission after the restart", func() error { return f.admit(false) })
	after := f.secret(t)
	for _, k := range []string{certs.KeyCACert, certs.KeyCAKey, certs.KeyCABundle, certs.KeyTLSCert} {
		if !bytes.Equal(before.Data[k], after.Data[k]) {
			t.Errorf("%s changed across the restart", k)
		}
	}
	if !bytes.Equal(bundle, f.injected(t)) {
		t.Error("the injected bundle changed across the restart")
	}
}

// TestRotationWithoutFailedCalls runs the rotator with lifetimes of seconds (CA 10s, serving
// certificate 4s, propagation 1s) while two clients make admission calls through the webhook
// without pause: over two CA rotations and several serving certificates, not one call fails.
func TestRotationWithoutFailedCalls(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.CALifetime, o.CertLifetime, o.PropagationDelay = 10*time.Second, 4*time.Second, time.Second
	f.start(t, o, true)
	testenv.Eventually(t, 20*time.Second, "admission through the webhook", func() error { return f.admit(false) })

	var (
		calls    atomic.Int64
		mu       sync.Mutex
		failures []string
		cas      = map[[32]byte]bool{}
		servings = map[[32]byte]bool{}
		maxCAs   int
	)
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for ctx.Err() == nil {
				err := f.admit(false)
				if err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
					mu.Unlock()
				}
				calls.Add(1)
			}
		})
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			if sec, err := cs.CoreV1().Secrets(f.secretNS).Get(ctx, f.name, metav1.GetOptions{}); err == nil {
				cas[sha256.Sum256(sec.Data[certs.KeyCACert])] = true
				servings[sha256.Sum256(sec.Data[certs.KeyTLSCert])] = true
				maxCAs = max(maxCAs, bytes.Count(sec.Data[certs.KeyCABundle], []byte("BEGIN CERTIFICATE")))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d admission calls failed during rotation:\n%s", len(failures), calls.Load(), strings.Join(failures, "\n"))
	}
	if calls.Load() < 100 {
		t.Errorf("only %d admission calls in 14s", calls.Load())
	}
	if len(cas) < 2 || len(servings) < 4 || maxCAs != 2 {
		t.Errorf("saw %d CAs, %d serving certificates and at most %d CAs in the bundle; want a CA rotation (2 CAs, a bundle of 2) and at least 4 serving certificates", len(cas), len(servings), maxCAs)
	}
	t.Logf("%d admission calls, %d CAs, %d serving certificates", calls.Load(), len(cas), len(servings))
}
