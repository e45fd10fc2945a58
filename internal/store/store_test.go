package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

var issuer = func() *authztest.Issuer {
	iss, err := authztest.NewIssuer("https://idp.example.com")
	if err != nil {
		panic(err)
	}
	return iss
}()

func compile(t testing.TB, ns, name string) *policy.Policy {
	t.Helper()
	spec := &authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{
		Issuer: issuer.URL,
		JWKS:   authv1alpha1.JWKSSource{Inline: issuer.PublicJWKS()},
	}}}
	p, errs := policy.Compile(spec, policy.CompileOptions{Namespace: ns, Name: name})
	if len(errs) > 0 {
		t.Fatalf("compile %s/%s: %v", ns, name, errs.ToAggregate())
	}
	return p
}

func keysOf(ps []*policy.Policy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Namespace()+"/"+p.Name())
	}
	return out
}

func TestSnapshotLookups(t *testing.T) {
	a, b, c := compile(t, "shop", "orders"), compile(t, "bank", "loans"), compile(t, "shop", "carts")
	invalid := map[store.Key]string{{Namespace: "shop", Name: "broken"}: "spec.issuers: Required value"}
	snap := store.NewSnapshot([]*policy.Policy{a, b, c}, invalid)
	// The constructor copies: changing the caller's map must not show.
	invalid[store.Key{Namespace: "x", Name: "y"}] = "later"

	if got := snap.Get("shop", "orders"); got != a {
		t.Errorf("Get(shop, orders) = %p, want %p", got, a)
	}
	if got := snap.Get("shop", "missing"); got != nil {
		t.Errorf("Get(shop, missing) = %v, want nil", got)
	}
	if got := snap.Get("shop", "broken"); got != nil {
		t.Errorf("an invalid policy must not be served, got %v", got)
	}
	if msg, ok := snap.Invalid("shop", "broken"); !ok || msg != "spec.issuers: Required value" {
		t.Errorf("Invalid(shop, broken) = %q, %v", msg, ok)
	}
	if _, ok := snap.Invalid("x", "y"); ok {
		t.Error("NewSnapshot did not copy the invalid map")
	}
	if diff := cmp.Diff([]string{"bank/loans", "shop/carts", "shop/orders"}, keysOf(snap.Policies())); diff != "" {
		t.Errorf("Policies() order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]store.Key{{Namespace: "shop", Name: "broken"}}, snap.InvalidKeys()); diff != "" {
		t.Errorf("InvalidKeys() (-want +got):\n%s", diff)
	}
	if snap.Len() != 3 {
		t.Errorf("Len() = %d, want 3", snap.Len())
	}
	if !snap.KeysReady() {
		t.Error("inline keys are loaded at compile time: KeysReady() = false")
	}
	if got := (store.Key{Namespace: "a", Name: "b"}).String(); got != "a/b" {
		t.Errorf("Key.String() = %q", got)
	}
}

func TestNilSnapshotIsEmptyAndNotReady(t *testing.T) {
	var snap *store.Snapshot
	if snap.Get("a", "b") != nil || snap.Len() != 0 || snap.Policies() != nil || snap.InvalidKeys() != nil {
		t.Error("nil snapshot is not empty")
	}
	if _, ok := snap.Invalid("a", "b"); ok {
		t.Error("nil snapshot reports an invalid policy")
	}
	if snap.KeysReady() {
		t.Error("nil snapshot reports keys ready")
	}
}

func TestKeysReadyFollowsPolicies(t *testing.T) {
	// A secretRef without a resolver never loads: that policy holds the
	// snapshot's readiness back.
	spec := &authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{
		Issuer:     "https://hs.example.com",
		Algorithms: []authv1alpha1.Algorithm{authv1alpha1.HS256},
		JWKS:       authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "s", Key: "jwks.json"}},
	}}}
	notLoaded, errs := policy.Compile(spec, policy.CompileOptions{Namespace: "shop", Name: "hs",
		Secrets: func(ns, name, key string) ([]byte, error) {
			return nil, fmt.Errorf("secret %s/%s: %w", ns, name, policy.ErrSecretNotFound)
		}})
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	ready := compile(t, "shop", "orders")
	if snap := store.NewSnapshot([]*policy.Policy{ready}, nil); !snap.KeysReady() {
		t.Error("KeysReady() = false with loaded keys only")
	}
	if snap := store.NewSnapshot([]*policy.Policy{ready, notLoaded}, nil); snap.KeysReady() {
		t.Error("KeysReady() = true while one policy's secret is absent")
	}
}

func TestPublishStampsRevisionsAndNotifies(t *testing.T) {
	s := store.New()
	if s.Load() != nil || s.Published() {
		t.Fatal("a new store is not empty")
	}
	var seen []uint64
	s.OnPublish(func(snap *store.Snapshot) { seen = append(seen, snap.Revision) })
	var second atomic.Int32
	s.OnPublish(func(*store.Snapshot) { second.Add(1) })

	first := store.NewSnapshot([]*policy.Policy{compile(t, "shop", "orders")}, nil)
	s.Publish(first)
	if s.Load() != first || !s.Published() {
		t.Fatal("Publish did not make the snapshot current")
	}
	next := store.NewSnapshot(nil, nil)
	s.Publish(next)
	if s.Load() != next {
		t.Fatal("the second Publish did not replace the first")
	}
	if diff := cmp.Diff([]uint64{1, 2}, seen); diff != "" {
		t.Errorf("revisions seen by OnPublish (-want +got):\n%s", diff)
	}
	if first.Revision != 1 || next.Revision != 2 {
		t.Errorf("revisions %d, %d; want 1, 2", first.Revision, next.Revision)
	}
	if second.Load() != 2 {
		t.Errorf("second listener called %d times, want 2", second.Load())
	}
}

func TestWaitPublished(t *testing.T) {
	s := store.New()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitPublished(ctx); err == nil {
		t.Fatal("WaitPublished returned nil before any Publish")
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitPublished(context.Background()) }()
	s.Publish(store.NewSnapshot(nil, nil))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitPublished did not return after Publish")
	}
	// After the first Publish it returns at once, even with a dead context.
	if err := s.WaitPublished(ctx); err != nil {
		t.Errorf("WaitPublished after Publish = %v", err)
	}
}

// TestConcurrentLoadDuringPublish runs readers against a publisher (run it
// with -race): every reader sees a whole snapshot, either all of a
// generation's policies or all of the next one's, and revisions never go
// backwards for one reader.
func TestConcurrentLoadDuringPublish(t *testing.T) {
	s := store.New()
	gens := make([]*store.Snapshot, 20)
	for i := range gens {
		ps := []*policy.Policy{compile(t, "gen", fmt.Sprintf("p%d-a", i)), compile(t, "gen", fmt.Sprintf("p%d-b", i))}
		gens[i] = store.NewSnapshot(ps, nil)
	}
	s.Publish(gens[0])
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := s.Load()
				if snap.Revision < last {
					errs <- fmt.Errorf("revision went from %d to %d", last, snap.Revision)
					return
				}
				last = snap.Revision
				ps := snap.Policies()
				if len(ps) != 2 {
					errs <- fmt.Errorf("snapshot %d has %d policies", snap.Revision, len(ps))
					return
				}
				gen := int(snap.Revision - 1)
				for _, suffix := range []string{"a", "b"} {
					if snap.Get("gen", fmt.Sprintf("p%d-%s", gen, suffix)) == nil {
						errs <- fmt.Errorf("snapshot %d lacks its own policy p%d-%s", snap.Revision, gen, suffix)
						return
					}
				}
				reads.Add(1)
			}
		}()
	}
	for _, g := range gens[1:] {
		time.Sleep(time.Millisecond)
		s.Publish(g)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("readers never ran")
	}
}

// TestConcurrentPublishersKeepOrder: with several publishers, the current
// snapshot is always the one with the highest revision, and listeners see
// revisions in increasing order.
func TestConcurrentPublishersKeepOrder(t *testing.T) {
	s := store.New()
	var mu sync.Mutex
	var seen []uint64
	s.OnPublish(func(snap *store.Snapshot) {
		mu.Lock()
		seen = append(seen, snap.Revision)
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				s.Publish(store.NewSnapshot(nil, nil))
			}
		}()
	}
	wg.Wait()
	if got := s.Load().Revision; got != 200 {
		t.Errorf("current revision %d, want 200", got)
	}
	for i, r := range seen {
		if r != uint64(i+1) {
			t.Fatalf("listener saw revision %d at position %d", r, i)
		}
	}
}
