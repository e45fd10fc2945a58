package certs

import (
	"bytes"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The keys of the certificate Secret. tls.crt and tls.key make it a kubernetes.io/tls Secret
// that other tools understand; the CA key never leaves it.
const (
	KeyTLSCert  = corev1.TLSCertKey
	KeyTLSKey   = corev1.TLSPrivateKeyKey
	KeyCACert   = "ca.crt"
	KeyCAKey    = "ca.key"
	KeyCABundle = "ca-bundle.crt"
	// AnnotationBundleSince records when the bundle last gained a CA (RFC 3339), so that a new
	// leader knows whether the current CA has propagated.
	AnnotationBundleSince = "auth.claimguard.dev/ca-bundle-since"
)

// decodeState reads the Secret; parts that are absent or do not parse are left nil (and are
// regenerated), and the problems are returned for the log.
func decodeState(sec *corev1.Secret) (state, []error) {
	var s state
	if sec == nil {
		return s, nil
	}
	var problems []error
	if len(sec.Data[KeyCACert]) > 0 || len(sec.Data[KeyCAKey]) > 0 {
		ca, err := parseKeyPair(sec.Data[KeyCACert], sec.Data[KeyCAKey])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s/%s: %w", KeyCACert, KeyCAKey, err))
		} else {
			s.ca = ca
		}
	}
	if len(sec.Data[KeyCABundle]) > 0 {
		b, err := parseCerts(sec.Data[KeyCABundle])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", KeyCABundle, err))
		} else {
			s.bundle = b
		}
	}
	if len(sec.Data[KeyTLSCert]) > 0 || len(sec.Data[KeyTLSKey]) > 0 {
		kp, err := parseKeyPair(sec.Data[KeyTLSCert], sec.Data[KeyTLSKey])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s/%s: %w", KeyTLSCert, KeyTLSKey, err))
		} else {
			s.serving = kp
		}
	}
	if v := sec.Annotations[AnnotationBundleSince]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			problems = append(problems, fmt.Errorf("annotation %s: %w", AnnotationBundleSince, err))
		} else {
			s.bundleSince = t
		}
	}
	return s, problems
}

// encodeState writes s into sec (which keeps its other metadata) and reports whether the
// Secret changed. A new Secret is of type kubernetes.io/tls; an existing one keeps its type,
// which the API server does not let change.
func encodeState(sec *corev1.Secret, s state) bool {
	data := map[string][]byte{
		KeyCACert:   s.ca.certPEM,
		KeyCAKey:    s.ca.keyPEM,
		KeyCABundle: encodeCerts(s.bundle),
	}
	if s.serving != nil {
		data[KeyTLSCert], data[KeyTLSKey] = s.serving.certPEM, s.serving.keyPEM
	}
	since := s.bundleSince.UTC().Format(time.RFC3339Nano)
	changed := sec.Annotations[AnnotationBundleSince] != since || len(sec.Data) != len(data)
	for k, v := range data {
		if !bytes.Equal(sec.Data[k], v) {
			changed = true
		}
	}
	if !changed {
		return false
	}
	if sec.Type == "" {
		sec.Type = corev1.SecretTypeTLS
	}
	sec.Data = data
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Annotations[AnnotationBundleSince] = since
	if sec.Labels == nil {
		sec.Labels = map[string]string{}
	}
	sec.Labels["app.kubernetes.io/managed-by"] = "claimguard"
	sec.Labels["app.kubernetes.io/component"] = "webhook-certificate"
	return true
}
