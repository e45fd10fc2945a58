package certs_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/claimguard/claimguard/internal/certs"
	"github.com/claimguard/claimguard/internal/testenv"
)

var (
	env *testenv.Env
	cs  kubernetes.Interface
	seq atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Options{}, func(e *testenv.Env) {
		env = e
		cs = kubernetes.NewForConfigOrDie(e.Config)
	}))
}

// fixture is one webhook installation of a test: a namespace holding the certificate Secret, a
// namespace whose ConfigMaps the webhook judges, and a ValidatingWebhookConfiguration calling
// https://127.0.0.1:<port>/validate with failurePolicy Fail and no caBundle of its own.
type fixture struct {
	name      string // of the Secret and the webhook configuration
	secretNS  string
	guardedNS string
	port      int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	n := seq.Add(1)
	f := &fixture{name: fmt.Sprintf("cg-certs-%d", n), secretNS: fmt.Sprintf("cg-certs-sys-%d", n), guardedNS: fmt.Sprintf("cg-certs-app-%d", n), port: freePort(t)}
	ctx := context.Background()
	for _, ns := range []string{f.secretNS, f.guardedNS} {
		create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"certs-test": f.name}}})
	}
	url := "https://127.0.0.1:" + strconv.Itoa(f.port) + "/validate"
	create(t, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: f.name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "configmaps.certs.claimguard.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"certs-test": f.name}},
		}},
	})
	t.Cleanup(func() {
		_ = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, f.name, metav1.DeleteOptions{})
	})
	return f
}

func (f *fixture) options() certs.Options {
	return certs.Options{
		Namespace:                       f.secretNS,
		SecretName:                      f.name,
		DNSNames:                        []string{"claimguard-webhook-service." + f.secretNS + ".svc", "localhost"},
		IPAddresses:                     []net.IP{net.ParseIP("127.0.0.1")},
		ValidatingWebhookConfigurations: []string{f.name},
		CALifetime:                      certs.DefaultCALifetime,
		CertLifetime:                    certs.DefaultCertLifetime,
		PropagationDelay:                certs.DefaultPropagationDelay,
		Logger:                          logr.Discard(),
	}
}

// replica is one running copy of the serving side, and optionally the leader's rotator.
type replica struct {
	source *certs.Source
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs a Source and a gated webhook server on f.port, plus a Rotator when leader; the
// webhook refuses ConfigMaps labelled deny=true and allows the rest.
func (f *fixture) start(t *testing.T, o certs.Options, leader bool) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{source: certs.NewSource(cs, o.Namespace, o.SecretName, logr.Discard()), cancel: cancel, done: make(chan struct{})}
	srv := webhook.NewServer(webhook.Options{
		Host: "127.0.0.1", Port: f.port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = r.source.GetCertificate; c.NextProtos = []string{"http/1.1"} }},
	})
	srv.Register("/validate", &admission.Webhook{Handler: admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		cm := &corev1.ConfigMap{}
		if err := admission.NewDecoder(env.Scheme).Decode(req, cm); err != nil {
			return admission.Errored(400, err)
		}
		if cm.Labels["deny"] == "true" {
			return admission.Denied("denied by the test webhook")
		}
		return admission.Allowed("")
	})})
	gated := certs.Gate(srv, r.source.WaitReady)
	var rot *certs.Rotator
	if leader {
		var err error
		if rot, err = certs.NewRotator(cs, o); err != nil {
			t.Fatal(err)
		}
		r.source.OnChange(rot.Trigger)
	}
	running := 2
	if rot != nil {
		running++
	}
	finished := make(chan struct{}, running)
	run := func(fn func(context.Context) error) {
		go func() {
			defer func() { finished <- struct{}{} }()
			if err := fn(ctx); err != nil {
				t.Errorf("runnable: %v", err)
			}
		}()
	}
	run(r.source.Start)
	run(gated.Start)
	if rot != nil {
		run(rot.Start)
	}
	go func() {
		for range running {
			<-finished
		}
		close(r.done)
	}()
	t.Cleanup(r.stop)
	return r
}

func (r *replica) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}
