package authz

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// Header names in canonical form: the handler indexes http.Header directly
// with them, which skips the canonicalisation (and its allocation) that
// Header.Get and Header.Set do.
const (
	hdrOriginalURL    = "X-Original-Url"
	hdrOriginalMethod = "X-Original-Method"
	hdrForwardedURI   = "X-Forwarded-Uri"
	hdrForwardedHost  = "X-Forwarded-Host"
	hdrForwardedMeth  = "X-Forwarded-Method"
	hdrRequestID      = "X-Request-Id"
	hdrAudit          = "X-Claimguard-Audit"
	hdrReason         = "X-Claimguard-Reason"
	hdrWWWAuth        = "Www-Authenticate"
	hdrContentType    = "Content-Type"
	hdrCacheControl   = "Cache-Control"
	hdrNoSniff        = "X-Content-Type-Options"
)

// Precomputed header values: shared, never modified.
var (
	textPlain = []string{"text/plain; charset=utf-8"}
	noStore   = []string{"no-store"}
	nosniff   = []string{"nosniff"}
	// reasonValues holds the X-Claimguard-Reason / X-Claimguard-Audit value
	// of every reason code.
	reasonValues = func() map[policy.Reason][]string {
		m := map[policy.Reason][]string{}
		for _, r := range policy.AllReasons() {
			m[r] = []string{string(r)}
		}
		return m
	}()
	notFoundDecision = policy.PolicyNotFoundDecision("no such policy")
)

// authzPrefix is the path of the forward-auth endpoints.
const authzPrefix = "/authz/"

// ServeHTTP routes by hand rather than through http.ServeMux: ServeMux
// cleans paths and answers "/authz//x" or "/authz/a/../b" with a redirect,
// and a proxy that follows redirects would then check another policy than
// the one configured. Here every /authz/... path is either exactly
// /authz/{namespace}/{policy} or a 403.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, authzPrefix) || path == "/authz":
		s.serveAuthz(w, r, path)
	case path == "/healthz":
		writeText(w, http.StatusOK, "ok\n")
	case path == "/readyz":
		if err := s.ReadyzCheck(r); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	case path == "/metrics" && s.promh != nil:
		s.promh.ServeHTTP(w, r)
	default:
		writeText(w, http.StatusNotFound, "404 not found\n")
	}
}

func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h[hdrContentType] = textPlain
	h[hdrNoSniff] = nosniff
	h[hdrCacheControl] = noStore
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// serveAuthz answers one forward-auth request.
func (s *Server) serveAuthz(w http.ResponseWriter, r *http.Request, path string) {
	start := time.Now()
	v := s.current()
	ns, name, suffix, ok := splitAuthzPath(path)
	req := policy.Request{Header: r.Header}
	req.Path, req.PathConflict = requestPath(r.Header, suffix)
	var e *entry
	if ok {
		k := store.Key{Namespace: ns, Name: name}
		if e = v.entries[k]; e == nil {
			e = v.invalid[k]
		}
	}
	if e == nil || e.policy == nil {
		s.denyUnknown(w, r, e, &req, path, ns, name, ok)
		s.metrics.duration.Observe(time.Since(start).Seconds())
		return
	}

	d := e.policy.Decide(&req)

	switch {
	case d.Public:
		w.WriteHeader(http.StatusOK)
		e.public.Inc()
	case d.Audit:
		w.Header()[hdrAudit] = reasonValues[d.Reason]
		w.WriteHeader(http.StatusOK)
		e.counter(true, d.Reason).Inc()
		s.logDecision(r, e, &d, &req, "Audit mode: request would have been denied")
	case d.Allowed:
		if len(d.Headers) > 0 {
			h := w.Header()
			vals := s.headerMemo.values(d.Headers)
			for i := range d.Headers {
				h[d.Headers[i].Name] = vals[i]
			}
		}
		w.WriteHeader(http.StatusOK)
		e.allow.Inc()
		if s.opts.LogAllowed {
			if l := s.log.V(1); l.Enabled() {
				l.Info("Request allowed", "JWTPolicy", e.key.String(), "requestID", requestID(r.Header),
					"method", originalMethod(r), "host", originalHost(r.Header), "path", logPath(req.Path))
			}
		}
	default:
		s.deny(w, e, &d)
		s.logDecision(r, e, &d, &req, "Request denied")
	}
	s.metrics.duration.Observe(time.Since(start).Seconds())
}

// deny writes a 401 or 403: the RFC 6750 challenge, the reason code in
// X-Claimguard-Reason (for proxies that relay the auth response, such as
// Traefik and Caddy) and a one-line text body, and counts it. None of it can
// hold the token: descriptions come from the engine, which never echoes token
// material. e is nil for an unknown policy.
func (s *Server) deny(w http.ResponseWriter, e *entry, d *policy.Decision) {
	h := w.Header()
	if d.WWWAuthenticate != "" {
		h[hdrWWWAuth] = []string{d.WWWAuthenticate}
	}
	h[hdrReason] = reasonValues[d.Reason]
	h[hdrContentType] = textPlain
	h[hdrNoSniff] = nosniff
	h[hdrCacheControl] = noStore
	w.WriteHeader(d.Status)
	body := make([]byte, 0, 32+len(d.Reason)+len(d.Description))
	body = strconv.AppendInt(body, int64(d.Status), 10)
	body = append(body, ' ')
	body = append(body, d.Reason...)
	if d.Description != "" {
		body = append(body, ": "...)
		body = append(body, d.Description...)
	}
	body = append(body, '\n')
	_, _ = w.Write(body)
	if e != nil {
		e.counter(false, d.Reason).Inc()
	} else {
		s.metrics.unknown.Inc()
	}
}

// denyUnknown answers a request for a policy that is not served (or an
// endpoint path that names none: named false) with policy_not_found. An invalid policy
// (e without a compiled policy) is logged as a denial of that policy; an
// unknown one with the endpoint path it asked for.
func (s *Server) denyUnknown(w http.ResponseWriter, r *http.Request, e *entry, req *policy.Request, rawPath, ns, name string, named bool) {
	if e != nil {
		s.deny(w, e, &notFoundDecision)
		s.logDecision(r, e, &notFoundDecision, req, "Request denied")
		return
	}
	s.deny(w, nil, &notFoundDecision)
	d := &notFoundDecision
	kv := []any{"reason", d.Reason, "status", d.Status, "requestID", requestID(r.Header),
		"method", originalMethod(r), "host", originalHost(r.Header)}
	if named {
		kv = append(kv, "JWTPolicy", ns+"/"+name)
	} else {
		kv = append(kv, "authzPath", logPath(rawPath))
	}
	kv = append(kv, "path", logPath(req.Path))
	s.log.Info("Request denied: unknown policy", kv...)
}

// logDecision writes the one line of a denial (or an Audit would-be denial):
// reason, policy, request id and the original request, never the token or a
// claim value.
func (s *Server) logDecision(r *http.Request, e *entry, d *policy.Decision, req *policy.Request, msg string) {
	kv := []any{"reason", d.Reason, "status", d.Reason.Status(), "JWTPolicy", e.key.String(),
		"requestID", requestID(r.Header), "method", originalMethod(r), "host", originalHost(r.Header),
		"path", logPath(req.Path)}
	if req.PathConflict {
		kv = append(kv, "pathConflict", true)
	}
	if d.Description != "" {
		kv = append(kv, "description", d.Description)
	}
	if e.cause != "" {
		kv = append(kv, "cause", e.cause)
	}
	s.log.Info(msg, kv...)
}

// splitAuthzPath parses "/authz/{namespace}/{policy}" from the escaped path,
// and "/authz/{namespace}/{policy}/{original path}": Gateway API's
// ExternalAuth filter takes its path as a prefix and appends the original
// request's path to it, and sends no X-Original-URL or X-Forwarded-Uri.
// suffix is "" or the appended path, starting with "/". Anything else is
// malformed: empty segments, any percent-escape in the two names (an encoded
// "/" included: valid names never need escaping), names that are not
// Kubernetes names.
func splitAuthzPath(path string) (ns, name, suffix string, ok bool) {
	rest, found := strings.CutPrefix(path, authzPrefix)
	if !found {
		return "", "", "", false
	}
	ns, rest, found = strings.Cut(rest, "/")
	if !found || !isDNSLabel(ns) {
		return "", "", "", false
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest, suffix = rest[:i], rest[i:]
	}
	if !isDNSSubdomain(rest) {
		return "", "", "", false
	}
	return ns, rest, suffix, true
}

// isDNSLabel checks an RFC 1123 label, a namespace name: at most 63 of
// [a-z0-9-], starting and ending alphanumeric.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// isDNSSubdomain checks an RFC 1123 subdomain, an object name: at most 253
// characters of dot-separated labels.
func isDNSSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for s != "" {
		label, rest, _ := strings.Cut(s, ".")
		if !isDNSLabel(label) {
			return false
		}
		if rest == "" && len(s) > len(label) {
			return false // trailing dot
		}
		s = rest
	}
	return true
}

// OriginalPath returns the raw path of the original request, query removed,
// from X-Original-URL (ingress-nginx: an absolute URL) or X-Forwarded-Uri
// (Traefik, Caddy: path and query). conflict is set when both are present
// and disagree, or when either is repeated: the engine then never treats
// the path as public, because the proxy and the upstream may read a
// different one than we do. explain uses it too, so it reads a request's
// headers exactly as the server does.
func OriginalPath(h http.Header) (path string, conflict bool) {
	ou, fu := h[hdrOriginalURL], h[hdrForwardedURI]
	if len(ou) > 1 || len(fu) > 1 {
		conflict = true
	}
	var p1, p2 string
	if len(ou) > 0 {
		p1 = pathOfURL(ou[0])
	}
	if len(fu) > 0 {
		p2 = stripQuery(fu[0])
	}
	switch {
	case len(ou) > 0 && len(fu) > 0:
		if p1 != p2 {
			conflict = true
		}
		return p1, conflict
	case len(ou) > 0:
		return p1, conflict
	default:
		return p2, conflict
	}
}

// requestPath is the original request's path for the engine: from the
// proxy's headers (OriginalPath), else the path a Gateway API ExternalAuth
// filter appended to the endpoint. When both are present and disagree, the
// path is marked conflicting and never public.
func requestPath(h http.Header, suffix string) (path string, conflict bool) {
	if len(h[hdrOriginalURL]) == 0 && len(h[hdrForwardedURI]) == 0 {
		return suffix, false
	}
	path, conflict = OriginalPath(h)
	if suffix != "" && suffix != path {
		conflict = true
	}
	return path, conflict
}

// pathOfURL extracts the path of an absolute URL ("https://host/p?q") or of
// an origin-form target ("/p?q") without allocating. A URL without a path
// is "/"; anything unparseable is "", which is never public.
func pathOfURL(u string) string {
	if strings.HasPrefix(u, "/") {
		if strings.HasPrefix(u, "//") {
			return "" // scheme-relative: not an origin-form path
		}
		return stripQuery(u)
	}
	i := strings.Index(u, "://")
	if i <= 0 {
		return ""
	}
	rest := u[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 || rest[j] != '/' {
		return "/"
	}
	return stripQuery(rest[j:])
}

func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// originalMethod is the original request's method for logs.
func originalMethod(r *http.Request) string {
	if v := r.Header[hdrOriginalMethod]; len(v) > 0 {
		return logField(v[0], 16)
	}
	if v := r.Header[hdrForwardedMeth]; len(v) > 0 {
		return logField(v[0], 16)
	}
	return r.Method
}

// originalHost is the original request's host for logs.
func originalHost(h http.Header) string {
	if v := h[hdrOriginalURL]; len(v) > 0 {
		if i := strings.Index(v[0], "://"); i > 0 {
			rest := v[0][i+3:]
			if j := strings.IndexAny(rest, "/?#"); j >= 0 {
				rest = rest[:j]
			}
			if k := strings.LastIndexByte(rest, '@'); k >= 0 {
				rest = rest[k+1:] // never log userinfo
			}
			return logField(rest, 255)
		}
	}
	if v := h[hdrForwardedHost]; len(v) > 0 {
		return logField(v[0], 255)
	}
	return ""
}

// requestID is the proxy's X-Request-ID when it looks like one, else a new
// random id, so every denial line can be matched with the proxy's log.
func requestID(h http.Header) string {
	if v := h[hdrRequestID]; len(v) > 0 && len(v[0]) <= 128 && printable(v[0]) && v[0] != "" {
		return v[0]
	}
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		x := rand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

// logPath bounds a path for the log; the query was already removed (it may
// carry tokens, as in ?access_token=).
func logPath(p string) string { return logField(p, 256) }

// logField cuts s to max bytes and replaces anything unprintable, so a
// client cannot forge log lines or blow them up.
func logField(s string, max int) string {
	cut := false
	if len(s) > max {
		s, cut = s[:max], true
	}
	if !printable(s) {
		b := []byte(s)
		for i, c := range b {
			if c < 0x20 || c >= 0x7f {
				b[i] = '?'
			}
		}
		s = string(b)
	}
	if cut {
		s += "..."
	}
	return s
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
