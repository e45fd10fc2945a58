package certs

import (
	"crypto/x509"
	"net"
	"slices"
	"time"
)

// policy is what the rotator aims for.
type policy struct {
	caLifetime, certLifetime time.Duration
	// propagation is how long a CA must have been in the injected bundle before a serving
	// certificate it signed is served: API servers read webhook configurations through their own
	// watch, so a bundle written now is trusted everywhere only a little later.
	propagation time.Duration
	dnsNames    []string
	ips         []net.IP
}

// state is the content of the certificate Secret.
type state struct {
	// ca signs new serving certificates; nil when absent or unusable.
	ca *keyPair
	// bundle is what clients trust: ca first, then the previous CA while it is still valid,
	// so that a serving certificate signed by either verifies during a CA rotation.
	bundle []*x509.Certificate
	// bundleSince is when the bundle last gained a CA.
	bundleSince time.Time
	// serving is the certificate the webhook server presents; nil when absent or unusable.
	serving *keyPair
}

// ensureCA returns s with a CA that is valid at now and not yet due for renewal. A CA due for
// renewal is replaced while the old one stays in the bundle until it expires: certificates it
// signed keep verifying until they are replaced in turn (see ensureServing).
func ensureCA(s state, now time.Time, p policy) (state, bool, error) {
	changed := false
	if s.ca == nil || !validAt(s.ca.cert, now) || !s.ca.cert.IsCA || !now.Before(renewAt(s.ca.cert)) {
		ca, err := newCA(now, p.caLifetime)
		if err != nil {
			return s, false, err
		}
		bundle := []*x509.Certificate{ca.cert}
		if s.ca != nil && s.ca.cert.IsCA && validAt(s.ca.cert, now) {
			bundle = append(bundle, s.ca.cert)
		}
		s.ca, s.bundle, s.bundleSince, changed = ca, bundle, now, true
	}
	// The bundle: the current CA first, then the others that are still valid, at most the
	// one before it (a CA older than that signed nothing that is still served).
	bundle := []*x509.Certificate{s.ca.cert}
	for _, c := range s.bundle {
		if len(bundle) < 2 && !c.Equal(s.ca.cert) && c.IsCA && validAt(c, now) {
			bundle = append(bundle, c)
		}
	}
	if !slices.EqualFunc(bundle, s.bundle, (*x509.Certificate).Equal) {
		if !slices.ContainsFunc(s.bundle, s.ca.cert.Equal) {
			// The bundle gains the current CA only now (it was lost or hand-edited).
			s.bundleSince = now
		}
		s.bundle, changed = bundle, true
	}
	return s, changed, nil
}

// servingUsable reports whether the serving certificate can still be served at now: valid,
// for the configured names, and signed by a CA of the bundle.
func servingUsable(s state, now time.Time, p policy) bool {
	if s.serving == nil || !validAt(s.serving.cert, now) || !sameSANs(s.serving.cert, p.dnsNames, p.ips) {
		return false
	}
	return slices.ContainsFunc(s.bundle, func(ca *x509.Certificate) bool { return s.serving.cert.CheckSignatureFrom(ca) == nil })
}

// switchAt is when a serving certificate signed by the current CA may first be served.
func switchAt(s state, p policy) time.Time { return s.bundleSince.Add(p.propagation) }

// ensureServing returns s with a serving certificate that is usable at now, renewing it when due
// or when it was signed by an older CA. A renewal that would need the current CA before it has
// propagated (switchAt) waits while the old certificate stays usable, so that no API server
// meets a certificate its bundle cannot verify. It must run after the bundle of s has been
// injected into every webhook configuration.
func ensureServing(s state, now time.Time, p policy) (state, bool, error) {
	usable := servingUsable(s, now, p)
	if usable && now.Before(renewAt(s.serving.cert)) && s.serving.cert.CheckSignatureFrom(s.ca.cert) == nil {
		return s, false, nil
	}
	// Renewal is due (or the certificate comes from an older CA). Wait for the current CA to
	// propagate while the old certificate lasts at least until then.
	if usable && now.Before(switchAt(s, p)) && s.serving.cert.NotAfter.After(switchAt(s, p)) {
		return s, false, nil
	}
	cert, err := newServing(s.ca, now, p.certLifetime, p.dnsNames, p.ips)
	if err != nil {
		return s, false, err
	}
	s.serving = cert
	return s, true, nil
}

// nextCheck is when s next needs attention: a renewal, a pending switch to the current CA, or
// a CA leaving the bundle.
func nextCheck(s state, now time.Time, p policy) time.Time {
	next := renewAt(s.ca.cert)
	consider := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	if s.serving != nil {
		due := renewAt(s.serving.cert)
		if s.serving.cert.CheckSignatureFrom(s.ca.cert) != nil && switchAt(s, p).Before(due) {
			due = switchAt(s, p)
		}
		// ensureServing postpones a renewal until the current CA has propagated (while the
		// certificate lasts); waking before that would only find it postponed again.
		if due.Before(switchAt(s, p)) && s.serving.cert.NotAfter.After(switchAt(s, p)) {
			due = switchAt(s, p)
		}
		consider(due)
	}
	for _, c := range s.bundle[1:] {
		consider(c.NotAfter)
	}
	if next.Before(now) {
		return now
	}
	return next
}
