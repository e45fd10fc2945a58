package certs

import (
	"crypto/x509"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testPolicy() policy {
	return policy{
		caLifetime:   9 * time.Hour,
		certLifetime: 3 * time.Hour,
		propagation:  10 * time.Minute,
		dnsNames:     []string{"claimguard-webhook-service.claimguard-system.svc"},
		ips:          []net.IP{net.ParseIP("127.0.0.1")},
	}
}

// check runs the rotator's decision steps of one Check at now, the way Check orders them.
func check(t *testing.T, s state, now time.Time, p policy) state {
	t.Helper()
	s, _, err := ensureCA(s, now, p)
	if err != nil {
		t.Fatal(err)
	}
	if !servingUsable(s, now, p) {
		if s.serving, err = newServing(s.ca, now, p.certLifetime, p.dnsNames, p.ips); err != nil {
			t.Fatal(err)
		}
	}
	// (Check writes the Secret and injects the bundle here.)
	s, _, err = ensureServing(s, now, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifies(c *x509.Certificate, bundle []*x509.Certificate) bool {
	return slices.ContainsFunc(bundle, func(ca *x509.Certificate) bool { return c.CheckSignatureFrom(ca) == nil })
}

// TestRotationSchedule simulates thirty hours of a rotator that checks every minute and proves
// the invariants rotation rests on: the served certificate is always valid and always verifies
// against the bundle that was injected at least one propagation delay earlier (what a slow API
// server still uses), the CA and the serving certificate are both renewed, and the rotator
// never sleeps past a change (nextCheck comes no later than the next change).
func TestRotationSchedule(t *testing.T) {
	p := testPolicy()
	type injected struct {
		at     time.Time
		bundle []*x509.Certificate
	}
	var (
		s          state
		history    []injected
		cas        = map[string]bool{}
		servings   = map[string]bool{}
		sleepUntil time.Time
	)
	for now := t0; now.Before(t0.Add(30 * time.Hour)); now = now.Add(time.Minute) {
		before := s
		s = check(t, s, now, p)
		changed := before.ca != s.ca || before.serving != s.serving || !slices.EqualFunc(before.bundle, s.bundle, (*x509.Certificate).Equal)
		// A change found before the time the last check asked to be woken at would have been
		// missed by a rotator that sleeps until then.
		if changed && now.Before(sleepUntil) {
			t.Fatalf("%s: a change is due, but the rotator sleeps until %s", now.Sub(t0), sleepUntil.Sub(t0))
		}
		sleepUntil = nextCheck(s, now, p)
		if !sleepUntil.After(now) && !changed {
			t.Fatalf("%s: nextCheck %s is not in the future although nothing is due", now.Sub(t0), sleepUntil.Sub(t0))
		}
		if len(history) == 0 || !slices.EqualFunc(history[len(history)-1].bundle, s.bundle, (*x509.Certificate).Equal) {
			history = append(history, injected{at: now, bundle: s.bundle})
		}
		cas[string(s.ca.cert.Raw)] = true
		servings[string(s.serving.cert.Raw)] = true

		if !validAt(s.serving.cert, now) || !sameSANs(s.serving.cert, p.dnsNames, p.ips) {
			t.Fatalf("%s: serving certificate not valid for the names at this time", now.Sub(t0))
		}
		if !s.bundle[0].Equal(s.ca.cert) {
			t.Fatalf("%s: the bundle does not start with the current CA", now.Sub(t0))
		}
		// The bundle a lagging API server still holds: the last one injected at or before
		// now - propagation (none during the first propagation delay: nothing was served).
		var old []*x509.Certificate
		for _, h := range history {
			if !h.at.After(now.Add(-p.propagation)) {
				old = h.bundle
			}
		}
		if old != nil && !verifies(s.serving.cert, old) {
			t.Fatalf("%s: the served certificate does not verify with the bundle injected %s ago", now.Sub(t0), p.propagation)
		}
		if !verifies(s.serving.cert, s.bundle) {
			t.Fatalf("%s: the served certificate does not verify with the current bundle", now.Sub(t0))
		}
	}
	// 30h of a 9h CA renewed at 2/3: at least four CAs; of a 3h certificate: at least fifteen.
	if len(cas) < 4 || len(servings) < 15 {
		t.Errorf("%d CAs and %d serving certificates in 30h; want at least 4 and 15", len(cas), len(servings))
	}
}

func TestEnsureRepairs(t *testing.T) {
	p := testPolicy()
	good := check(t, state{}, t0, p)
	foreign := check(t, state{}, t0, p)
	for _, tc := range []struct {
		name    string
		mod     func(state) state
		newCA   bool
		newCert bool
		since   bool // bundleSince moves to now
	}{
		{"nothing to do", func(s state) state { return s }, false, false, false},
		{"bundle lost the CA", func(s state) state { s.bundle = nil; return s }, false, false, true},
		{"names changed", func(s state) state {
			q := p
			q.dnsNames = []string{"other.svc"}
			s.serving, _ = newServing(s.ca, t0, p.certLifetime, q.dnsNames, q.ips)
			return s
		}, false, true, false},
		{"serving from a foreign CA", func(s state) state { s.serving = foreign.serving; return s }, false, true, false},
		{"CA lost", func(s state) state { s.ca = nil; return s }, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(time.Minute)
			in := tc.mod(good)
			out := check(t, in, now, p)
			if gotCA := out.ca != good.ca; gotCA != tc.newCA {
				t.Errorf("new CA %v, want %v", gotCA, tc.newCA)
			}
			if gotCert := out.serving != in.serving; gotCert != tc.newCert {
				t.Errorf("new serving certificate %v, want %v", gotCert, tc.newCert)
			}
			if moved := out.bundleSince.Equal(now); moved != tc.since {
				t.Errorf("bundleSince moved %v, want %v", moved, tc.since)
			}
			if !verifies(out.serving.cert, out.bundle) {
				t.Error("served certificate does not verify with the bundle")
			}
		})
	}
}

func TestSecretRoundTrip(t *testing.T) {
	s := check(t, state{}, t0, testPolicy())
	sec := &corev1.Secret{}
	if !encodeState(sec, s) {
		t.Fatal("encoding into an empty Secret changed nothing")
	}
	if sec.Type != corev1.SecretTypeTLS {
		t.Errorf("type %q", sec.Type)
	}
	if encodeState(sec, s) {
		t.Error("encoding the same state twice reports a change")
	}
	got, problems := decodeState(sec)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if !got.ca.cert.Equal(s.ca.cert) || !got.serving.cert.Equal(s.serving.cert) || !got.bundleSince.Equal(s.bundleSince) ||
		!slices.EqualFunc(got.bundle, s.bundle, (*x509.Certificate).Equal) {
		t.Error("decoded state differs")
	}

	// An existing Secret keeps its type (the API server refuses a type change).
	opaque := &corev1.Secret{Type: corev1.SecretTypeOpaque}
	encodeState(opaque, s)
	if opaque.Type != corev1.SecretTypeOpaque {
		t.Errorf("type changed to %q", opaque.Type)
	}

	// Broken parts are reported and left out, never half-used.
	other := check(t, state{}, t0, testPolicy())
	sec.Data[KeyTLSKey] = other.serving.keyPEM
	sec.Data[KeyCAKey] = []byte("garbage")
	got, problems = decodeState(sec)
	if got.serving != nil || got.ca != nil || len(problems) != 2 {
		t.Errorf("serving %v, ca %v, problems %v", got.serving != nil, got.ca != nil, problems)
	}
	for _, p := range problems {
		if strings.Contains(p.Error(), "BEGIN") {
			t.Errorf("a problem quotes key material: %v", p)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	good := func() Options {
		return Options{Namespace: "ns", SecretName: "s", DNSNames: []string{"a.ns.svc"},
			CALifetime: DefaultCALifetime, CertLifetime: DefaultCertLifetime, PropagationDelay: DefaultPropagationDelay}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"defaults", func(*Options) {}, ""},
		{"no secret", func(o *Options) { o.SecretName = "" }, "--webhook-cert-secret"},
		{"no names", func(o *Options) { o.DNSNames = nil }, "--webhook-service-name"},
		{"cert outlives CA", func(o *Options) { o.CertLifetime = 2 * o.CALifetime }, "must not exceed"},
		{"propagation too long", func(o *Options) { o.PropagationDelay = o.CertLifetime / 2 }, "--webhook-ca-propagation-delay"},
		{"zero lifetime", func(o *Options) { o.CALifetime = 0 }, "positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.mod(&o)
			err := o.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// BenchmarkCheckSteps measures the decision work of one rotator check that finds nothing to
// do (parse-free: the state is already decoded), and of issuing a serving certificate.
func BenchmarkCheckSteps(b *testing.B) {
	p := testPolicy()
	s, _, _ := ensureCA(state{}, t0, p)
	s.serving, _ = newServing(s.ca, t0, p.certLifetime, p.dnsNames, p.ips)
	b.Run("nothing-due", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			st, _, _ := ensureCA(s, t0.Add(time.Minute), p)
			if _, changed, _ := ensureServing(st, t0.Add(time.Minute), p); changed {
				b.Fatal("renewed")
			}
		}
	})
	b.Run("issue-serving", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := newServing(s.ca, t0, p.certLifetime, p.dnsNames, p.ips); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode-secret", func(b *testing.B) {
		sec := &corev1.Secret{}
		encodeState(sec, s)
		b.ReportAllocs()
		for b.Loop() {
			if _, problems := decodeState(sec); len(problems) > 0 {
				b.Fatal(problems)
			}
		}
	})
}
