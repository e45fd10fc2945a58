package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// IndexSecretRefs is the field index of JWTPolicies by the names of the Secrets their
// issuers' jwks.secretRef name (in the policy's namespace).
const IndexSecretRefs = "spec.issuers.jwks.secretRef.name"

// secretRefNames returns the distinct Secret names a policy references, sorted.
func secretRefNames(p *authv1alpha1.JWTPolicy) []string {
	var out []string
	for _, iss := range p.Spec.Issuers {
		if ref := iss.JWKS.SecretRef; ref != nil && !slices.Contains(out, ref.Name) {
			out = append(out, ref.Name)
		}
	}
	slices.Sort(out)
	return out
}

// indexSecretRefs is the IndexSecretRefs extractor.
func indexSecretRefs(obj client.Object) []string {
	p, ok := obj.(*authv1alpha1.JWTPolicy)
	if !ok {
		return nil
	}
	return secretRefNames(p)
}

// UnreadSecretTypes are Secret types that never hold a JWKS document. The manager's cache drops
// their data (see StripUnreadSecretData), so Helm releases and service-account tokens do not
// cost memory; a secretRef naming one is reported as not found, with the reason.
var UnreadSecretTypes = []corev1.SecretType{
	"helm.sh/release.v1",
	corev1.SecretTypeServiceAccountToken,
	corev1.SecretTypeDockercfg,
	corev1.SecretTypeDockerConfigJson,
	corev1.SecretTypeBootstrapToken,
}

// Compiled is the outcome of compiling one revision of a JWTPolicy.
type Compiled struct {
	// Revision is uid/generation plus the resourceVersions of the referenced Secrets.
	Revision string
	// UID and Generation are those of the compiled object.
	UID        types.UID
	Generation int64
	// Policy is the compiled policy; nil when Errors is not empty.
	Policy *policy.Policy
	// Errors are the field errors of a policy that does not compile.
	Errors field.ErrorList
	// sources are the observer labels of the policy's remote key sets.
	sources []string
}

// SnapshotBuilderOptions configure a SnapshotBuilder.
type SnapshotBuilderOptions struct {
	// Store receives every snapshot.
	Store store.Publisher
	// Fetcher serves the remote key sets of every compiled policy.
	Fetcher *keys.Fetcher
	// TokenCache is the verified-token cache shared by all compiled policies; nil: none.
	TokenCache *policy.Cache
	// MaxTokenBytes is the token size cap (--max-token-bytes); 0: the engine's default.
	MaxTokenBytes int
	// AllowInsecureHTTP allows http:// JWKS URIs (--allow-insecure-jwks-http, tests only).
	AllowInsecureHTTP bool
	// Debounce is how long changes are gathered before a snapshot is published.
	Debounce time.Duration
	// Clock is the engine's clock; nil: time.Now.
	Clock func() time.Time
}

// SnapshotBuilder compiles the JWTPolicies of the manager's informer cache and publishes them
// as whole store.Snapshots. It runs on every replica (NeedLeaderElection is false), so every
// replica's forward-auth server answers from its own cache, leader or not.
//
// Only what changed is recompiled: a policy's revision is its uid and generation plus the
// resourceVersions of the Secrets it references, and an entry is compiled once per revision,
// whether the builder's own loop or the reconciler asks first (Ensure). Policies that do not
// compile are published as invalid, so the server fails closed on them.
//
// Remote key sets need no release call: the keys.Fetcher holds its sources only weakly and
// stops refreshing one once no compiled policy references it, so replacing or removing an
// entry here is what lets an unused source go.
type SnapshotBuilder struct {
	opts   SnapshotBuilderOptions
	cache  cache.Cache
	reader client.Reader

	sf   singleflight.Group
	wake chan struct{}

	mu       sync.Mutex
	entries  map[store.Key]*Compiled
	bySource map[string]map[store.Key]struct{}
	dirty    map[store.Key]struct{}
	changed  bool
	started  bool

	notify    atomic.Pointer[func(store.Key)]
	publishes atomic.Int64
}

// NewSnapshotBuilder returns a builder reading mgr's cache, registers the Secret index it needs
// and adds it to mgr as a Runnable of every replica.
func NewSnapshotBuilder(mgr ctrl.Manager, opts SnapshotBuilderOptions) (*SnapshotBuilder, error) {
	if opts.Store == nil {
		return nil, errors.New("snapshot builder needs a store")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	b := &SnapshotBuilder{
		opts:     opts,
		cache:    mgr.GetCache(),
		reader:   mgr.GetCache(),
		wake:     make(chan struct{}, 1),
		entries:  map[store.Key]*Compiled{},
		bySource: map[string]map[store.Key]struct{}{},
		dirty:    map[store.Key]struct{}{},
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &authv1alpha1.JWTPolicy{}, IndexSecretRefs, indexSecretRefs); err != nil {
		return nil, fmt.Errorf("index JWTPolicies by secretRef: %w", err)
	}
	if err := mgr.Add(b); err != nil {
		return nil, fmt.Errorf("add snapshot builder: %w", err)
	}
	return b, nil
}

// NeedLeaderElection is false: every replica serves, so every replica builds snapshots.
func (b *SnapshotBuilder) NeedLeaderElection() bool { return false }

// Publishes returns how many snapshots the builder has published.
func (b *SnapshotBuilder) Publishes() int64 { return b.publishes.Load() }

// OnKeysChanged registers fn, called with the policies whose remote key set was just refreshed
// (successfully or not). The reconciler uses it to update status as soon as keys load. fn must
// not block.
func (b *SnapshotBuilder) OnKeysChanged(fn func(store.Key)) { b.notify.Store(&fn) }

// ObserveRefresh implements keys.Observer: it forwards a refresh of a remote source to the
// policies using it.
func (b *SnapshotBuilder) ObserveRefresh(ev keys.RefreshEvent) {
	fn := b.notify.Load()
	if fn == nil {
		return
	}
	b.mu.Lock()
	var targets []store.Key
	if users, ok := b.bySource[ev.Source]; ok {
		for k := range users {
			targets = append(targets, k)
		}
	} else {
		// A label this package failed to predict: tell every policy with remote keys rather
		// than leave one waiting for its periodic recheck.
		for _, users := range b.bySource {
			for k := range users {
				targets = append(targets, k)
			}
		}
	}
	b.mu.Unlock()
	for _, k := range targets {
		(*fn)(k)
	}
}

// Start registers the informer handlers, publishes a first snapshot once the cache has synced
// and then republishes, debounced, after every change until ctx ends.
func (b *SnapshotBuilder) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("snapshot-builder")
	polInf, err := b.cache.GetInformer(ctx, &authv1alpha1.JWTPolicy{})
	if err != nil {
		return fmt.Errorf("get JWTPolicy informer: %w", err)
	}
	if _, err := polInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { b.markPolicy(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*authv1alpha1.JWTPolicy)
			n, ok2 := newObj.(*authv1alpha1.JWTPolicy)
			// Status writes do not change what is served.
			if ok1 && ok2 && o.Generation == n.Generation && o.UID == n.UID {
				return
			}
			b.markPolicy(newObj)
		},
		DeleteFunc: func(obj any) { b.markPolicy(obj) },
	}); err != nil {
		return fmt.Errorf("watch JWTPolicies: %w", err)
	}
	secInf, err := b.cache.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("get Secret informer: %w", err)
	}
	if _, err := secInf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.markSecret(ctx, obj) },
		UpdateFunc: func(_, newObj any) { b.markSecret(ctx, newObj) },
		DeleteFunc: func(obj any) { b.markSecret(ctx, obj) },
	}); err != nil {
		return fmt.Errorf("watch Secrets: %w", err)
	}
	if !b.cache.WaitForCacheSync(ctx) {
		return errors.New("snapshot builder: cache did not sync")
	}
	log.Info("Building the first snapshot")
	if err := b.rebuildAll(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	b.started = true
	b.mu.Unlock()
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.wake:
		}
		// Gather a burst of changes into one snapshot.
		timer.Reset(b.opts.Debounce)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		if err := b.processDirty(ctx); err != nil {
			log.Error(err, "Rebuilding the snapshot failed; retrying")
			b.poke()
		}
	}
}

func (b *SnapshotBuilder) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func keyOf(obj any) (store.Key, bool) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	o, ok := obj.(client.Object)
	if !ok {
		return store.Key{}, false
	}
	return store.Key{Namespace: o.GetNamespace(), Name: o.GetName()}, true
}

func (b *SnapshotBuilder) markPolicy(obj any) {
	k, ok := keyOf(obj)
	if !ok {
		return
	}
	b.mu.Lock()
	b.dirty[k] = struct{}{}
	b.mu.Unlock()
	b.poke()
}

// markSecret marks the policies that reference the Secret; the index makes every other Secret
// event a map lookup.
func (b *SnapshotBuilder) markSecret(ctx context.Context, obj any) {
	k, ok := keyOf(obj)
	if !ok {
		return
	}
	var list authv1alpha1.JWTPolicyList
	if err := b.reader.List(ctx, &list, client.InNamespace(k.Namespace), client.MatchingFields{IndexSecretRefs: k.Name}); err != nil {
		return
	}
	if len(list.Items) == 0 {
		return
	}
	b.mu.Lock()
	for i := range list.Items {
		b.dirty[store.Key{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}] = struct{}{}
	}
	b.mu.Unlock()
	b.poke()
}

// rebuildAll compiles every policy in the cache and publishes the first snapshot.
func (b *SnapshotBuilder) rebuildAll(ctx context.Context) error {
	var list authv1alpha1.JWTPolicyList
	if err := b.reader.List(ctx, &list); err != nil {
		return fmt.Errorf("list JWTPolicies: %w", err)
	}
	b.mu.Lock()
	for i := range list.Items {
		b.dirty[store.Key{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}] = struct{}{}
	}
	b.changed = true // publish even an empty snapshot: it says "synced, nothing here"
	b.mu.Unlock()
	return b.processDirty(ctx)
}

// processDirty recompiles the marked policies (in parallel: compiling CEL and parsing keys is
// CPU work) and publishes a snapshot when anything changed.
func (b *SnapshotBuilder) processDirty(ctx context.Context) error {
	b.mu.Lock()
	dirty := b.dirty
	b.dirty = map[store.Key]struct{}{}
	b.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	var failed []store.Key
	var fmu sync.Mutex
	for k := range dirty {
		g.Go(func() error {
			var p authv1alpha1.JWTPolicy
			err := b.reader.Get(gctx, client.ObjectKey{Namespace: k.Namespace, Name: k.Name}, &p)
			if apierrors.IsNotFound(err) {
				b.remove(k)
				return nil
			}
			if err == nil {
				_, err = b.Ensure(gctx, &p)
			}
			if err != nil {
				fmu.Lock()
				failed = append(failed, k)
				fmu.Unlock()
				return fmt.Errorf("JWTPolicy %s: %w", k, err)
			}
			return nil
		})
	}
	err := g.Wait()
	if len(failed) > 0 {
		b.mu.Lock()
		for _, k := range failed {
			b.dirty[k] = struct{}{}
		}
		b.mu.Unlock()
	}
	b.publishIfChanged()
	return err
}

func (b *SnapshotBuilder) remove(k store.Key) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.entries[k]; ok {
		b.unindexSources(k, e)
		delete(b.entries, k)
		b.changed = true
	}
}

func (b *SnapshotBuilder) publishIfChanged() {
	b.mu.Lock()
	if !b.changed {
		b.mu.Unlock()
		return
	}
	b.changed = false
	pols := make([]*policy.Policy, 0, len(b.entries))
	invalid := map[store.Key]string{}
	for k, e := range b.entries {
		if e.Policy != nil {
			pols = append(pols, e.Policy)
		} else {
			invalid[k] = errorSummary(e.Errors, 1024)
		}
	}
	// Publish under the lock, so snapshots reach the store in the order they were built.
	b.opts.Store.Publish(store.NewSnapshot(pols, invalid))
	b.publishes.Add(1)
	b.mu.Unlock()
}

// Get returns the latest compiled revision of namespace/name, nil when none.
func (b *SnapshotBuilder) Get(k store.Key) *Compiled {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entries[k]
}

// Ensure returns p compiled at its current revision, compiling it now when needed (once per
// revision, however many callers ask at the same time). A new revision is published with the
// next snapshot. The error is a failure to read referenced Secrets from the cache, never a
// compile error: those are in Compiled.Errors.
func (b *SnapshotBuilder) Ensure(ctx context.Context, p *authv1alpha1.JWTPolicy) (*Compiled, error) {
	k := store.Key{Namespace: p.Namespace, Name: p.Name}
	rev, secrets, err := b.revision(ctx, p)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	e := b.entries[k]
	b.mu.Unlock()
	if e != nil && e.Revision == rev {
		return e, nil
	}
	v, _, _ := b.sf.Do(k.String()+"|"+rev, func() (any, error) {
		return b.compile(p, rev, secrets), nil
	})
	c := v.(*Compiled)
	b.mu.Lock()
	cur := b.entries[k]
	switch {
	case cur != nil && cur.Revision == c.Revision:
		c = cur // a concurrent caller stored this revision already
	case cur != nil && cur.UID == c.UID && cur.Generation > c.Generation:
		// A caller holding an older copy of the object must not replace a newer compile.
		c = cur
	default:
		if cur != nil {
			b.unindexSources(k, cur)
		}
		b.entries[k] = c
		b.indexSources(k, c)
		b.changed = true
	}
	started := b.started
	b.mu.Unlock()
	if started {
		b.poke()
	}
	return c, nil
}

func (b *SnapshotBuilder) indexSources(k store.Key, c *Compiled) {
	for _, s := range c.sources {
		m := b.bySource[s]
		if m == nil {
			m = map[store.Key]struct{}{}
			b.bySource[s] = m
		}
		m[k] = struct{}{}
	}
}

func (b *SnapshotBuilder) unindexSources(k store.Key, c *Compiled) {
	for _, s := range c.sources {
		delete(b.bySource[s], k)
		if len(b.bySource[s]) == 0 {
			delete(b.bySource, s)
		}
	}
}

// revision computes p's revision and reads the Secrets it references, so the compile uses
// exactly the Secret versions the revision names.
func (b *SnapshotBuilder) revision(ctx context.Context, p *authv1alpha1.JWTPolicy) (string, map[string]*corev1.Secret, error) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s/%d", p.UID, p.Generation)
	names := secretRefNames(p)
	secrets := make(map[string]*corev1.Secret, len(names))
	for _, name := range names {
		s := &corev1.Secret{}
		err := b.reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: name}, s)
		switch {
		case apierrors.IsNotFound(err):
			sb.WriteString("/" + name + "=-")
			continue
		case err != nil:
			return "", nil, fmt.Errorf("read Secret %s/%s: %w", p.Namespace, name, err)
		}
		secrets[name] = s
		sb.WriteString("/" + name + "=" + s.ResourceVersion)
	}
	return sb.String(), secrets, nil
}

func (b *SnapshotBuilder) compile(p *authv1alpha1.JWTPolicy, rev string, secrets map[string]*corev1.Secret) *Compiled {
	resolve := func(namespace, name, key string) ([]byte, error) {
		s := secrets[name]
		if namespace != p.Namespace || s == nil {
			return nil, fmt.Errorf("Secret %s/%s: %w", namespace, name, policy.ErrSecretNotFound)
		}
		if slices.Contains(UnreadSecretTypes, s.Type) {
			return nil, fmt.Errorf("Secret %s/%s is of type %s, which claimguard does not read: %w", namespace, name, s.Type, policy.ErrSecretNotFound)
		}
		v, ok := s.Data[key]
		if !ok {
			return nil, fmt.Errorf("Secret %s/%s has no key %q: %w", namespace, name, key, policy.ErrSecretNotFound)
		}
		return v, nil
	}
	pol, errs := policy.Compile(&p.Spec, policy.CompileOptions{
		Namespace:         p.Namespace,
		Name:              p.Name,
		Revision:          rev,
		Fetcher:           b.opts.Fetcher,
		Secrets:           resolve,
		AllowInsecureHTTP: b.opts.AllowInsecureHTTP,
		MaxTokenBytes:     b.opts.MaxTokenBytes,
		Cache:             b.opts.TokenCache,
		Clock:             b.opts.Clock,
	})
	c := &Compiled{Revision: rev, UID: p.UID, Generation: p.Generation}
	if len(errs) > 0 {
		c.Errors = errs
		return c
	}
	c.Policy = pol
	for _, iss := range p.Spec.Issuers {
		switch {
		case iss.JWKS.URI != "":
			if u, err := url.Parse(iss.JWKS.URI); err == nil {
				c.sources = append(c.sources, u.String())
			}
		case iss.JWKS.Discovery:
			c.sources = append(c.sources, strings.TrimSuffix(iss.Issuer, "/")+"/.well-known/openid-configuration")
		}
	}
	return c
}

// errorSummary joins field errors into one line of at most limit bytes.
func errorSummary(errs field.ErrorList, limit int) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Error())
	}
	return truncate(strings.Join(parts, "; "), limit)
}

// truncate shortens s to at most limit bytes on a rune boundary, marking the cut.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit - len(" ...")
	for cut > 0 && !utf8RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " ..."
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

var _ manager.Runnable = (*SnapshotBuilder)(nil)
var _ manager.LeaderElectionRunnable = (*SnapshotBuilder)(nil)
var _ keys.Observer = (*SnapshotBuilder)(nil)
