package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// +kubebuilder:rbac:groups="",namespace=claimguard-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations;mutatingwebhookconfigurations,verbs=get;list;watch;update

// Defaults of the certificate lifetimes: a CA for a year and serving certificates for 90 days,
// each renewed after two thirds of its life.
const (
	DefaultCALifetime       = 365 * 24 * time.Hour
	DefaultCertLifetime     = 90 * 24 * time.Hour
	DefaultPropagationDelay = time.Minute
	DefaultResync           = 10 * time.Minute
)

// Options configure the Rotator and the Source.
type Options struct {
	// Namespace and SecretName locate the certificate Secret.
	Namespace, SecretName string
	// DNSNames and IPAddresses are the subject alternative names of the serving certificate:
	// "<service>.<namespace>.svc" for webhook configurations that name a Service, and
	// whatever host a clientConfig.url names.
	DNSNames    []string
	IPAddresses []net.IP
	// ValidatingWebhookConfigurations and MutatingWebhookConfigurations name the configurations
	// whose every webhook gets the CA bundle, whether it names a Service or a URL.
	ValidatingWebhookConfigurations, MutatingWebhookConfigurations []string
	// CALifetime and CertLifetime are the validity of a new CA and serving certificate.
	CALifetime, CertLifetime time.Duration
	// PropagationDelay is how long a new CA is in the injected bundle before a serving
	// certificate it signed is served, so that every API server trusts it first.
	PropagationDelay time.Duration
	// Resync bounds the time between two checks of the Secret and the configurations.
	Resync time.Duration
	// Clock reads the time; nil: the real clock.
	Clock clock.PassiveClock
	// Logger receives the rotator's log lines.
	Logger logr.Logger
}

// Validate checks the options; errors name the manager flag.
func (o *Options) Validate() error {
	switch {
	case o.Namespace == "" || o.SecretName == "":
		return errors.New("--webhook-cert-secret and its namespace must not be empty")
	case len(o.DNSNames) == 0 && len(o.IPAddresses) == 0:
		return errors.New("the serving certificate needs a name: set --webhook-service-name or --webhook-cert-extra-sans")
	case o.CALifetime <= 0 || o.CertLifetime <= 0:
		return errors.New("--webhook-ca-lifetime and --webhook-cert-lifetime must be positive")
	case o.CertLifetime > o.CALifetime:
		return fmt.Errorf("--webhook-cert-lifetime %s must not exceed --webhook-ca-lifetime %s", o.CertLifetime, o.CALifetime)
	case o.PropagationDelay < 0 || 3*o.PropagationDelay >= o.CertLifetime:
		// A third of a lifetime is the renewal window; the switch to a new CA must fit in it.
		return fmt.Errorf("--webhook-ca-propagation-delay %s must be under a third of --webhook-cert-lifetime %s", o.PropagationDelay, o.CertLifetime)
	}
	return nil
}

func (o *Options) policy() policy {
	return policy{
		caLifetime:   o.CALifetime,
		certLifetime: o.CertLifetime,
		propagation:  o.PropagationDelay,
		dnsNames:     slices.Clone(o.DNSNames),
		ips:          slices.Clone(o.IPAddresses),
	}
}

// Rotator keeps the certificate Secret and the injected CA bundles current. It runs on the
// leader only, so one writer decides: a new CA joins the bundle next to the old one, the bundle
// is injected, and only after PropagationDelay does a serving certificate from the new CA get
// served, so no admission call meets a certificate its API server cannot verify.
type Rotator struct {
	cs      kubernetes.Interface
	o       Options
	p       policy
	clock   clock.PassiveClock
	log     logr.Logger
	trigger chan struct{}
	missing map[string]bool // configurations found absent, logged once
}

var _ manager.LeaderElectionRunnable = (*Rotator)(nil)

// NewRotator returns a Rotator writing with cs.
func NewRotator(cs kubernetes.Interface, o Options) (*Rotator, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	r := &Rotator{cs: cs, o: o, p: o.policy(), clock: o.Clock, log: o.Logger, trigger: make(chan struct{}, 1), missing: map[string]bool{}}
	if r.clock == nil {
		r.clock = clock.RealClock{}
	}
	return r, nil
}

// NeedLeaderElection is true: only the leader writes the Secret and the bundles.
func (r *Rotator) NeedLeaderElection() bool { return true }

// Trigger asks for a check soon; it never blocks.
func (r *Rotator) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Start checks now, then whenever something is due, the Secret or a webhook configuration
// changes, or Resync passes, until ctx ends. Failures are retried with backoff.
func (r *Rotator) Start(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(r.cs, 0)
	onConfig := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(metav1.Object); ok && (slices.Contains(r.o.ValidatingWebhookConfigurations, m.GetName()) || slices.Contains(r.o.MutatingWebhookConfigurations, m.GetName())) {
			r.Trigger()
		}
	}
	handler := toolscache.ResourceEventHandlerFuncs{AddFunc: onConfig, UpdateFunc: func(_, n any) { onConfig(n) }, DeleteFunc: onConfig}
	if len(r.o.ValidatingWebhookConfigurations) > 0 {
		if _, err := factory.Admissionregistration().V1().ValidatingWebhookConfigurations().Informer().AddEventHandler(handler); err != nil {
			return err
		}
	}
	if len(r.o.MutatingWebhookConfigurations) > 0 {
		if _, err := factory.Admissionregistration().V1().MutatingWebhookConfigurations().Informer().AddEventHandler(handler); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()

	backoff := time.Duration(0)
	for {
		next, err := r.Check(ctx)
		wait := next.Sub(r.clock.Now())
		if err != nil {
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			wait = backoff
			if ctx.Err() == nil {
				r.log.Error(err, "Webhook certificate check failed; retrying", "retryIn", wait)
			}
		} else {
			backoff = 0
			wait = min(wait, r.o.Resync)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-r.trigger:
			t.Stop()
		}
	}
}

// Check brings the Secret and the bundles up to date once and returns when it next needs to.
// Start calls it; it is not safe for concurrent use.
func (r *Rotator) Check(ctx context.Context) (time.Time, error) {
	now := r.clock.Now()
	secrets := r.cs.CoreV1().Secrets(r.o.Namespace)
	sec, err := secrets.Get(ctx, r.o.SecretName, metav1.GetOptions{})
	exists := err == nil
	switch {
	case apierrors.IsNotFound(err):
		sec = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.o.Namespace, Name: r.o.SecretName}}
	case err != nil:
		return now, fmt.Errorf("read Secret %s/%s: %w", r.o.Namespace, r.o.SecretName, err)
	}
	st, problems := decodeState(sec)
	for _, p := range problems {
		r.log.Info("Unusable part of the webhook certificate Secret is replaced", "Secret", r.o.Namespace+"/"+r.o.SecretName, "problem", p.Error())
	}
	oldCA := st.ca
	st, _, err = ensureCA(st, now, r.p)
	if err != nil {
		return now, err
	}
	if st.ca != oldCA {
		r.log.Info("Created webhook CA", "notAfter", st.ca.cert.NotAfter, "bundle", len(st.bundle))
	}
	// Nothing usable is served yet (first start, names changed, expired): issue now, there is
	// no working certificate to keep while the new CA propagates.
	if !servingUsable(st, now, r.p) {
		if st, err = r.issue(st, now); err != nil {
			return now, err
		}
	}
	if sec, err = r.write(ctx, sec, st, exists); err != nil {
		return now, err
	}
	if err := r.inject(ctx, encodeCerts(st.bundle)); err != nil {
		return now, err
	}
	// The bundle is in every configuration: a due renewal, or the switch to a CA that has
	// propagated, may happen now.
	before := st.serving
	if st, _, err = ensureServing(st, now, r.p); err != nil {
		return now, err
	}
	if st.serving != before {
		r.logIssued(st)
		if _, err = r.write(ctx, sec, st, true); err != nil {
			return now, err
		}
	}
	return nextCheck(st, now, r.p), nil
}

func (r *Rotator) issue(st state, now time.Time) (state, error) {
	kp, err := newServing(st.ca, now, r.p.certLifetime, r.p.dnsNames, r.p.ips)
	if err != nil {
		return st, err
	}
	st.serving = kp
	r.logIssued(st)
	return st, nil
}

func (r *Rotator) logIssued(st state) {
	r.log.Info("Issued webhook serving certificate", "notAfter", st.serving.cert.NotAfter, "dnsNames", st.serving.cert.DNSNames, "ipAddresses", len(st.serving.cert.IPAddresses))
}

// write stores st in sec when it changes it; sec carries the resourceVersion it was read at, so
// a concurrent writer (a previous leader) makes this fail and the check run again.
func (r *Rotator) write(ctx context.Context, sec *corev1.Secret, st state, exists bool) (*corev1.Secret, error) {
	if !encodeState(sec, st) {
		return sec, nil
	}
	secrets := r.cs.CoreV1().Secrets(r.o.Namespace)
	var (
		out *corev1.Secret
		err error
	)
	if exists {
		out, err = secrets.Update(ctx, sec, metav1.UpdateOptions{FieldManager: fieldManager})
	} else {
		out, err = secrets.Create(ctx, sec, metav1.CreateOptions{FieldManager: fieldManager})
	}
	if err != nil {
		return nil, fmt.Errorf("write Secret %s/%s: %w", r.o.Namespace, r.o.SecretName, err)
	}
	return out, nil
}

const fieldManager = "claimguard"

// inject sets caBundle on every webhook of the named configurations. A configuration that does
// not exist is skipped (it may be installed later; its creation triggers a check).
func (r *Rotator) inject(ctx context.Context, bundle []byte) error {
	api := r.cs.AdmissionregistrationV1()
	for _, name := range r.o.ValidatingWebhookConfigurations {
		cfg, err := api.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if r.skip(name, err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read ValidatingWebhookConfiguration %s: %w", name, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			changed = setBundle(&cfg.Webhooks[i].ClientConfig.CABundle, bundle) || changed
		}
		if changed {
			if _, err := api.ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
				return fmt.Errorf("inject the CA bundle into ValidatingWebhookConfiguration %s: %w", name, err)
			}
			r.log.Info("Injected CA bundle", "ValidatingWebhookConfiguration", name, "webhooks", len(cfg.Webhooks))
		}
	}
	for _, name := range r.o.MutatingWebhookConfigurations {
		cfg, err := api.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if r.skip(name, err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read MutatingWebhookConfiguration %s: %w", name, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			changed = setBundle(&cfg.Webhooks[i].ClientConfig.CABundle, bundle) || changed
		}
		if changed {
			if _, err := api.MutatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
				return fmt.Errorf("inject the CA bundle into MutatingWebhookConfiguration %s: %w", name, err)
			}
			r.log.Info("Injected CA bundle", "MutatingWebhookConfiguration", name, "webhooks", len(cfg.Webhooks))
		}
	}
	return nil
}

// skip reports whether a configuration is absent, logging it the first time.
func (r *Rotator) skip(name string, err error) bool {
	if !apierrors.IsNotFound(err) {
		delete(r.missing, name)
		return false
	}
	if !r.missing[name] {
		r.missing[name] = true
		r.log.Info("Webhook configuration not found; the CA bundle is injected when it is created", "name", name)
	}
	return true
}

func setBundle(dst *[]byte, bundle []byte) bool {
	if bytes.Equal(*dst, bundle) {
		return false
	}
	*dst = bytes.Clone(bundle)
	return true
}
