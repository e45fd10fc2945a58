package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// Options configure everything Setup adds to a manager.
type Options struct {
	// Store receives the snapshots; the forward-auth server reads it.
	Store *store.Store
	// Fetcher configures the shared remote key fetcher. Its Observer, if any, is told about
	// refreshes too (metrics); Setup adds its own. With KeyFetcher set, only its
	// AllowInsecureHTTP is used (compiles accept http:// URLs).
	Fetcher keys.FetcherOptions
	// KeyFetcher, when set, is used instead of a fetcher built from Fetcher: the caller runs
	// it (Start) and tells the returned SnapshotBuilder about its refreshes (ObserveRefresh).
	// A fetcher that outlives the manager lets a manager built again in the same process (after
	// a lost leader election) find every key set loaded: its compiles share the live sources.
	KeyFetcher *keys.Fetcher
	// TokenCache is the verified-token cache; nil: none.
	TokenCache *policy.Cache
	// MaxTokenBytes is the token size cap; 0: the engine's default.
	MaxTokenBytes int
	// Wiring says where the auth Service is and which controllers are wired.
	Wiring WiringOptions
	// Timing tunes debounce and recheck intervals; zero values take defaults.
	Timing Timing
	// MaxConcurrentReconciles is the number of policies reconciled at once (default 4).
	MaxConcurrentReconciles int
	// Clock is the reconciler's clock (condition times); nil: the real clock.
	Clock clock.PassiveClock
}

// Setup adds to mgr the key Fetcher, the SnapshotBuilder and the Gateway API tracker (every
// replica), and the JWTPolicyReconciler with its Middleware CRD watcher, the
// ReferenceGrantReconciler and the NamespaceReconciler, which keeps the guarded label of
// namespaces (leader only).
func Setup(mgr ctrl.Manager, o Options) (*SnapshotBuilder, *JWTPolicyReconciler, error) {
	if o.Store == nil {
		return nil, nil, errors.New("controllers: Options.Store is required")
	}
	if err := o.Wiring.Validate(); err != nil {
		return nil, nil, err
	}
	t := o.Timing.withDefaults()
	var b *SnapshotBuilder
	fetcher := o.KeyFetcher
	if fetcher == nil {
		extra := o.Fetcher.Observer
		// b is assigned before any policy is compiled, so before any source can refresh.
		o.Fetcher.Observer = keys.ObserverFunc(func(ev keys.RefreshEvent) {
			if b != nil {
				b.ObserveRefresh(ev)
			}
			if extra != nil {
				extra.ObserveRefresh(ev)
			}
		})
		fetcher = keys.NewFetcher(o.Fetcher)
		if err := mgr.Add(fetcherRunnable{fetcher}); err != nil {
			return nil, nil, fmt.Errorf("add key fetcher: %w", err)
		}
	}
	b, err := NewSnapshotBuilder(mgr, SnapshotBuilderOptions{
		Store:             o.Store,
		Fetcher:           fetcher,
		TokenCache:        o.TokenCache,
		MaxTokenBytes:     o.MaxTokenBytes,
		AllowInsecureHTTP: o.Fetcher.AllowInsecureHTTP,
		Debounce:          t.Debounce,
	})
	if err != nil {
		return nil, nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("discovery client: %w", err)
	}
	// One tracker for the reconcilers and the admission webhooks (r.Gateway), on every replica.
	gw := NewGatewayAPI(disc, t.CRDRecheck)
	if err := mgr.Add(gw); err != nil {
		return nil, nil, fmt.Errorf("add Gateway API tracker: %w", err)
	}
	grants := &ReferenceGrantReconciler{Client: mgr.GetClient(), Cache: mgr.GetCache(), Wiring: o.Wiring, Gateway: gw}
	if err := grants.SetupWithManager(mgr); err != nil {
		return nil, nil, err
	}
	r := &JWTPolicyReconciler{
		Client:                  mgr.GetClient(),
		Cache:                   mgr.GetCache(),
		APIReader:               mgr.GetAPIReader(),
		Builder:                 b,
		Recorder:                mgr.GetEventRecorder("claimguard"),
		Wiring:                  o.Wiring,
		CRD:                     NewMiddlewareCRD(disc, t.CRDRecheck),
		Gateway:                 gw,
		Grants:                  grants,
		Clock:                   o.Clock,
		Timing:                  t,
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, nil, err
	}
	if err := (&NamespaceReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return nil, nil, err
	}
	return b, r, nil
}

// fetcherRunnable runs the key Fetcher's refresh loop on every replica.
type fetcherRunnable struct{ f *keys.Fetcher }

func (r fetcherRunnable) Start(ctx context.Context) error {
	r.f.Start(ctx)
	return nil
}

func (fetcherRunnable) NeedLeaderElection() bool { return false }

var _ manager.LeaderElectionRunnable = fetcherRunnable{}

// ConfigureCache sets the cache transforms that keep the manager's memory flat: managedFields
// are dropped from every cached object except claimguard's own entries on Ingresses (which
// tell it which annotations it owns), and the data of Secrets that can never hold a JWKS
// (UnreadSecretTypes: Helm releases, service-account tokens, ...) is dropped.
func ConfigureCache(o *cache.Options) {
	o.DefaultTransform = stripManagedFields
	if o.ByObject == nil {
		o.ByObject = map[client.Object]cache.ByObject{}
	}
	o.ByObject[&networkingv1.Ingress{}] = cache.ByObject{Transform: keepOwnManagedFields}
	o.ByObject[&corev1.Secret{}] = cache.ByObject{Transform: stripSecret}
}

var stripManagedFields = cache.TransformStripManagedFields()

func keepOwnManagedFields(in any) (any, error) {
	obj, ok := in.(metav1.Object)
	if !ok {
		return in, nil
	}
	mfs := obj.GetManagedFields()
	if len(mfs) == 0 {
		return in, nil
	}
	kept := slices.DeleteFunc(slices.Clone(mfs), func(mf metav1.ManagedFieldsEntry) bool { return mf.Manager != FieldManager })
	if len(kept) == 0 {
		kept = nil
	}
	obj.SetManagedFields(kept)
	return in, nil
}

func stripSecret(in any) (any, error) {
	out, err := stripManagedFields(in)
	if err != nil {
		return out, err
	}
	if s, ok := out.(*corev1.Secret); ok && slices.Contains(UnreadSecretTypes, s.Type) {
		s.Data, s.StringData = nil, nil
	}
	return out, nil
}

var _ toolscache.TransformFunc = stripSecret
