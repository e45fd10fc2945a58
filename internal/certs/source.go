package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Source serves the certificate of the Secret to the webhook server. It runs on every replica,
// watching that one Secret, and swaps the certificate in when the leader renews it; handshakes
// in flight keep the certificate they started with.
type Source struct {
	cs              kubernetes.Interface
	namespace, name string
	log             logr.Logger

	cert      atomic.Pointer[tls.Certificate]
	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	onChange []func()
}

var _ manager.LeaderElectionRunnable = (*Source)(nil)

// NewSource returns a Source of Secret namespace/name.
func NewSource(cs kubernetes.Interface, namespace, name string, log logr.Logger) *Source {
	return &Source{cs: cs, namespace: namespace, name: name, log: log, ready: make(chan struct{})}
}

// NeedLeaderElection is false: every replica serves.
func (s *Source) NeedLeaderElection() bool { return false }

// OnChange registers fn, called after every event of the Secret (including its deletion), so
// that the Rotator on the leader checks it again.
func (s *Source) OnChange(fn func()) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
}

// Ready is closed once a certificate has been loaded.
func (s *Source) Ready() <-chan struct{} { return s.ready }

// WaitReady blocks until a certificate is loaded or ctx ends.
func (s *Source) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Checker is a readiness check: ready once a certificate is loaded.
func (s *Source) Checker(*http.Request) error {
	select {
	case <-s.ready:
		return nil
	default:
		return errors.New("the webhook certificate is not loaded yet")
	}
}

// GetCertificate is the tls.Config hook of the webhook server.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no webhook certificate loaded yet")
}

// Start watches the Secret until ctx ends.
func (s *Source) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(s.cs, 0,
		informers.WithNamespace(s.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.name).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    s.load,
		UpdateFunc: func(_, n any) { s.load(n) },
		// A deleted Secret keeps the last certificate served; the leader writes a new one.
		DeleteFunc: func(any) { s.changed() },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

func (s *Source) load(obj any) {
	defer s.changed()
	sec, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	c, err := tls.X509KeyPair(sec.Data[KeyTLSCert], sec.Data[KeyTLSKey])
	if err != nil {
		// Absent while the leader has yet to issue one, or broken: it repairs the Secret.
		s.log.V(1).Info("Webhook certificate Secret holds no usable certificate yet", "Secret", s.namespace+"/"+s.name, "error", err.Error())
		return
	}
	if old := s.cert.Swap(&c); old == nil || old.Leaf == nil || !old.Leaf.Equal(c.Leaf) {
		s.log.Info("Serving webhook certificate", "notAfter", c.Leaf.NotAfter, "dnsNames", c.Leaf.DNSNames)
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

func (s *Source) changed() {
	s.mu.Lock()
	fns := append([]func(){}, s.onChange...)
	s.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
