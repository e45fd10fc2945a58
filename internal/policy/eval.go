package policy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"

	"github.com/claimguard/claimguard/internal/keys"
)

// outcome is the verdict on one token before the mode is applied; cached
// entries hold one.
type outcome struct {
	denial
	headers []Header
	// cacheable: the verdict depends on the token alone (it came after a
	// valid signature and is not a time check), so it may be reused until
	// expNano, and only from nbfNano on.
	cacheable bool
	hasExp    bool
	expNano   int64
	nbfNano   int64
}

// evalState holds the per-request buffers; pooled so an uncached decision
// allocates only what it returns.
type evalState struct {
	hdr, pl jsonDoc
	sig     []byte
	input   []byte
}

var statePool = sync.Pool{New: func() any {
	return &evalState{
		hdr:   jsonDoc{buf: make([]byte, 0, 256), nodes: make([]jsonNode, 0, 16)},
		pl:    jsonDoc{buf: make([]byte, 0, 2048), nodes: make([]jsonNode, 0, 64)},
		sig:   make([]byte, 0, 512),
		input: make([]byte, 0, 2048),
	}
}}

// verify runs every check after the size cap on one token.
func (p *Policy) verify(tok string, tr *Trace) outcome {
	st := statePool.Get().(*evalState)
	o := p.verifyWith(st, tok, tr)
	statePool.Put(st)
	return o
}

func deny(d denial) outcome { return outcome{denial: d} }

// timeClaim is a parsed exp, nbf or iat.
type timeClaim struct {
	ok  bool
	sec float64
}

func (p *Policy) verifyWith(st *evalState, tok string, tr *Trace) outcome {
	// Structure: exactly three parts.
	d1 := strings.IndexByte(tok, '.')
	d2 := -1
	if d1 >= 0 {
		if i := strings.IndexByte(tok[d1+1:], '.'); i >= 0 {
			d2 = d1 + 1 + i
		}
	}
	if d2 < 0 || strings.IndexByte(tok[d2+1:], '.') >= 0 {
		parts := strings.Count(tok, ".") + 1
		if tr != nil {
			tr.add("structure", false, "the token has %d parts, a compact JWS has 3", parts)
		}
		if parts == 5 {
			return deny(dJWE)
		}
		return deny(dParts)
	}
	var ok bool
	hdr, pl := &st.hdr, &st.pl
	hdr.reset()
	if hdr.buf, ok = appendB64URL(hdr.buf, tok[:d1]); !ok {
		if tr != nil {
			tr.add("structure", false, "the header is not valid unpadded base64url")
		}
		return deny(dB64)
	}
	pl.reset()
	if pl.buf, ok = appendB64URL(pl.buf, tok[d1+1:d2]); !ok {
		if tr != nil {
			tr.add("structure", false, "the payload is not valid unpadded base64url")
		}
		return deny(dB64)
	}
	if st.sig, ok = appendB64URL(st.sig[:0], tok[d2+1:]); !ok {
		if tr != nil {
			tr.add("structure", false, "the signature is not valid unpadded base64url")
		}
		return deny(dB64)
	}
	if tr != nil {
		tr.add("structure", true, "three base64url parts: header %d, payload %d, signature %d bytes", len(hdr.buf), len(pl.buf), len(st.sig))
	}

	// Header.
	if err := hdr.parseObject(len(hdr.buf)); err != nil {
		if tr != nil {
			tr.add("header", false, "header: %v", err)
		}
		return deny(dHeaderJSON)
	}
	algN := hdr.member(0, "alg")
	if algN < 0 || hdr.nodes[algN].kind != jsonString {
		if tr != nil {
			tr.add("header", false, `"alg" is absent or not a string`)
		}
		return deny(dAlgType)
	}
	kidN := hdr.member(0, "kid")
	if kidN >= 0 && hdr.nodes[kidN].kind != jsonString {
		if tr != nil {
			tr.add("header", false, `"kid" is not a string`)
		}
		return deny(dKidType)
	}
	if hdr.member(0, "crit") >= 0 {
		// We implement no JWS extension (RFC 7515 §4.1.11), so any crit,
		// well-formed or not, names something we must not ignore.
		if tr != nil {
			tr.add("header", false, `"crit" is present; no extension is supported`)
		}
		return deny(dCrit)
	}
	if tr != nil {
		p.traceHeader(hdr, algN, kidN, tr)
	}

	// Payload and the types of the registered claims.
	if err := pl.parseObject(len(pl.buf)); err != nil {
		if tr != nil {
			tr.add("payload", false, "payload: %v", err)
		}
		return deny(dPayloadJSON)
	}
	// Three calls rather than a loop over pointers: taking the addresses
	// would move the claims to the heap.
	exp, okExp := readTime(pl, "exp")
	nbf, okNbf := readTime(pl, "nbf")
	iat, okIat := readTime(pl, "iat")
	if !okExp || !okNbf || !okIat {
		if tr != nil {
			tr.add("payload", false, "a time claim (exp, nbf or iat) is not a number")
		}
		return deny(dTimeType)
	}
	issN := pl.member(0, "iss")
	if issN >= 0 && pl.nodes[issN].kind != jsonString {
		if tr != nil {
			tr.add("payload", false, `"iss" is not a string`)
		}
		return deny(dIssType)
	}
	audN := pl.member(0, "aud")
	if audN >= 0 && !validAud(pl, audN) {
		if tr != nil {
			tr.add("payload", false, `"aud" is not a string or an array of strings`)
		}
		return deny(dAudType)
	}
	if tr != nil {
		tr.add("payload", true, "a JSON object with %d claims", pl.nodes[0].count)
	}

	// Issuer, chosen by the not yet trusted iss.
	if issN < 0 {
		if tr != nil {
			tr.add("issuer", false, `no "iss" claim`)
		}
		return deny(dIssAbsent)
	}
	issVal := pl.strVal(issN)
	var is *issuer
	for _, cand := range p.issuers {
		if string(issVal) == cand.name {
			is = cand
			break
		}
	}
	if is == nil {
		if tr != nil {
			tr.add("issuer", false, "iss %s is not one of the policy's issuers %s%s", shortenN(issVal, maxShownIssuer), quoteList(p.issuerNames()), issuerHint(string(issVal), p.issuerNames()))
		}
		return deny(dIssUnknown)
	}
	if tr != nil {
		tr.add("issuer", true, "iss %q (keys from %s)", is.name, is.source)
	}

	// Algorithm: the policy's allow-list decides, never the header alone.
	algVal := hdr.strVal(algN)
	if isNone(algVal) {
		if tr != nil {
			tr.add("alg", false, `alg %s: "none" is never accepted`, shorten(algVal))
		}
		return deny(dAlgNone)
	}
	alg := algByName(algVal)
	if alg == algUnknown {
		if tr != nil {
			tr.add("alg", false, "alg %s is not a supported algorithm", shorten(algVal))
		}
		return deny(dAlgUnknown)
	}
	if !is.algs.has(alg) {
		if tr != nil {
			tr.add("alg", false, "alg %s is not in the issuer's allow-list %v", alg, is.algs.names())
		}
		return deny(is.dAlg)
	}
	if tr != nil {
		tr.add("alg", true, "alg %s is allowed (%v)", alg, is.algs.names())
	}

	// Key and signature.
	set, err := is.keySet()
	if err != nil {
		if tr != nil {
			tr.add("key", false, "the issuer's key set has never loaded: %v", err)
		}
		return deny(newDenial(KeysUnavailable, fmt.Sprintf("the keys of issuer %q are unavailable: %v", is.name, err)))
	}
	st.input = append(st.input[:0], tok[:d2]...)
	algName := algNames[alg]
	// An empty kid names nothing (a JWK cannot have one), so it is treated
	// like an absent kid rather than as an unknown one that would trigger a
	// remote refresh.
	if kidN >= 0 && hdr.nodes[kidN].sLen > 0 {
		kid := string(hdr.strVal(kidN))
		k := set.Lookup(kid)
		if k == nil && is.remote != nil {
			// Perhaps the issuer rotated its keys: one early, rate-limited
			// refresh, bounded by the fetcher's timeout.
			if tr != nil {
				tr.add("key", true, "kid %s not in the current set: refreshing", shorten([]byte(kid)))
			}
			if s := is.remote.RefreshForKID(context.Background(), kid); s != nil {
				k = s.Lookup(kid)
			}
		}
		if k == nil {
			if tr != nil {
				tr.add("key", false, "kid %s names no key of the issuer (kids: %v)", shorten([]byte(kid)), set.KIDs())
			}
			return deny(is.dKeyNotFound)
		}
		if !k.Fits(algName) {
			if tr != nil {
				tr.add("key", false, "key %s (%v, alg %q) cannot serve alg %s", shorten([]byte(kid)), k.Type, k.Alg, alg)
			}
			return deny(is.dAlgKey)
		}
		if tr != nil {
			tr.add("key", true, "key %s (%v)", shorten([]byte(kid)), k.Type)
		}
		if err := keys.VerifySignature(algName, k, st.input, st.sig); err != nil {
			if tr != nil {
				tr.add("signature", false, "%s signature does not verify with key %s", alg, shorten([]byte(kid)))
			}
			return deny(is.dSig)
		}
		if tr != nil {
			tr.add("signature", true, "%s signature verified", alg)
		}
	} else {
		tried := 0
		var good *keys.Key
		for _, k := range set.Keys() {
			if !k.Fits(algName) {
				continue
			}
			tried++
			if keys.VerifySignature(algName, k, st.input, st.sig) == nil {
				good = k
				break
			}
		}
		if tried == 0 {
			if tr != nil {
				tr.add("key", false, "no kid, and none of the issuer's %d keys can serve %s", set.Len(), alg)
			}
			return deny(is.dKeyNotFound)
		}
		if good == nil {
			if tr != nil {
				tr.add("key", true, "no kid: tried the %d keys that can serve %s", tried, alg)
			}
			if tr != nil {
				tr.add("signature", false, "%s signature verifies with none of them", alg)
			}
			return deny(is.dSig)
		}
		if tr != nil {
			tr.add("key", true, "no kid: key %s (%v) verified, after %d tried", shorten([]byte(good.KID)), good.Type, tried)
		}
		if tr != nil {
			tr.add("signature", true, "%s signature verified", alg)
		}
	}

	// Time claims.
	now := p.clock()
	nowSec := float64(now.UnixNano()) / 1e9
	switch {
	case !exp.ok && is.requireExp:
		if tr != nil {
			tr.add("exp", false, "no exp, and the issuer requires one")
		}
		return deny(is.dExpiry)
	case !exp.ok:
		if tr != nil {
			tr.add("exp", true, "no exp (not required by this issuer)")
		}
	case exp.sec+p.skewSec < nowSec:
		if tr != nil {
			tr.add("exp", false, "exp %s + skew %s is before now %s", fmtTime(exp.sec), p.skew, fmtTime(math.Floor(nowSec)))
		}
		return deny(is.dExpired)
	default:
		if tr != nil {
			tr.add("exp", true, "exp %s + skew %s is after now %s", fmtTime(exp.sec), p.skew, fmtTime(math.Floor(nowSec)))
		}
	}
	if nbf.ok {
		if nbf.sec-p.skewSec > nowSec {
			if tr != nil {
				tr.add("nbf", false, "nbf %s - skew %s is after now %s", fmtTime(nbf.sec), p.skew, fmtTime(math.Floor(nowSec)))
			}
			return deny(is.dNBF)
		}
		if tr != nil {
			tr.add("nbf", true, "nbf %s - skew %s is not after now %s", fmtTime(nbf.sec), p.skew, fmtTime(math.Floor(nowSec)))
		}
	}
	if iat.ok {
		if iat.sec-p.skewSec > nowSec {
			if tr != nil {
				tr.add("iat", false, "iat %s - skew %s is after now %s", fmtTime(iat.sec), p.skew, fmtTime(math.Floor(nowSec)))
			}
			return deny(is.dIAT)
		}
		if tr != nil {
			tr.add("iat", true, "iat %s - skew %s is not after now %s", fmtTime(iat.sec), p.skew, fmtTime(math.Floor(nowSec)))
		}
	}

	// From here on the verdict depends on the token and the policy only, so
	// it may be cached, within the token's validity window.
	o := outcome{cacheable: true, nbfNano: math.MinInt64}
	if exp.ok {
		o.hasExp, o.expNano = true, secToNano(exp.sec)
	}
	if nbf.ok {
		o.nbfNano = secToNano(nbf.sec - p.skewSec)
	}
	if iat.ok {
		o.nbfNano = max(o.nbfNano, secToNano(iat.sec-p.skewSec))
	}

	// Audience.
	if len(is.audiences) > 0 {
		if !audMatches(pl, audN, is.audiences) {
			if audN < 0 {
				if tr != nil {
					tr.add("audience", false, "no aud; expected one of %s", quoteList(is.audiences))
				}
			} else {
				if tr != nil {
					tr.add("audience", false, "aud %s holds none of %s", shortenRaw(pl.raw(audN)), quoteList(is.audiences))
				}
			}
			o.denial = is.dAudience
			return o
		}
		if tr != nil {
			tr.add("audience", true, "aud %s holds one of %s", shortenRaw(pl.raw(audN)), quoteList(is.audiences))
		}
	}

	// Required claims, then rules, in order.
	for i := range p.claims {
		if d, ok := p.claims[i].check(pl, i, tr); !ok {
			o.denial = d
			return o
		}
	}
	if len(p.rules) > 0 {
		claims := pl.toAny(0)
		for i := range p.rules {
			if d, ok := p.rules[i].eval(claims, i, tr); !ok {
				o.denial = d
				return o
			}
		}
	}
	o.headers = p.forwardHeadersFor(pl, tr)
	return o
}

// readTime reads a NumericDate claim; ok is false when it is present but not
// a representable number.
func readTime(pl *jsonDoc, name string) (timeClaim, bool) {
	n := pl.member(0, name)
	if n < 0 {
		return timeClaim{}, true
	}
	v, ok := jsonNumberValue(pl, n)
	if !ok {
		return timeClaim{}, false
	}
	return timeClaim{ok: true, sec: v}, true
}

// keySet returns the issuer's current key set, or why there is none.
func (is *issuer) keySet() (*keys.Set, error) {
	if is.remote != nil {
		set, st := is.remote.Current()
		if !st.Loaded || set == nil {
			if st.LastError != nil {
				return nil, st.LastError
			}
			return nil, errNotLoaded
		}
		return set, nil
	}
	if is.static != nil {
		return is.static, nil
	}
	return nil, is.staticErr
}

var errNotLoaded = errors.New("the key set has not loaded yet")

func (p *Policy) traceHeader(hdr *jsonDoc, algN, kidN int32, tr *Trace) {
	var b strings.Builder
	fmt.Fprintf(&b, "alg %s", shorten(hdr.strVal(algN)))
	if kidN >= 0 {
		fmt.Fprintf(&b, ", kid %s", shorten(hdr.strVal(kidN)))
	} else {
		b.WriteString(", no kid")
	}
	if n := hdr.member(0, "typ"); n >= 0 {
		fmt.Fprintf(&b, ", typ %s", shorten(hdr.text(n)))
	}
	for _, h := range [...]string{"jku", "x5u", "jwk", "x5c"} {
		if hdr.member(0, h) >= 0 {
			fmt.Fprintf(&b, "; %q ignored (keys never come from the token)", h)
		}
	}
	if tr != nil {
		tr.add("header", true, "%s", b.String())
	}
}

// validAud: a string, or an array of strings.
func validAud(d *jsonDoc, n int32) bool {
	switch d.nodes[n].kind {
	case jsonString:
		return true
	case jsonArray:
		for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
			if d.nodes[c].kind != jsonString {
				return false
			}
		}
		return true
	}
	return false
}

func audMatches(d *jsonDoc, n int32, want []string) bool {
	if n < 0 {
		return false
	}
	match := func(v []byte) bool {
		for _, w := range want {
			if string(v) == w {
				return true
			}
		}
		return false
	}
	if d.nodes[n].kind == jsonString {
		return match(d.strVal(n))
	}
	for c := d.nodes[n].first; c >= 0; c = d.nodes[c].next {
		if match(d.strVal(c)) {
			return true
		}
	}
	return false
}

// secToNano converts seconds to Unix nanoseconds, saturating.
func secToNano(s float64) int64 {
	switch {
	case s >= math.MaxInt64/1e9:
		return math.MaxInt64
	case s <= math.MinInt64/1e9:
		return math.MinInt64
	}
	return int64(s * 1e9)
}

// fmtTime formats a NumericDate for traces: the number and its UTC time.
func fmtTime(s float64) string {
	num := strconv.FormatFloat(s, 'f', -1, 64)
	if s > 1e11 || s < -1e11 {
		return num
	}
	sec, frac := math.Modf(s)
	return num + " (" + timeUnix(int64(sec), int64(frac*1e9)) + ")"
}
