package policy

// algID numbers the supported JWS algorithms so an issuer's allow-list is a
// bitset: the request path checks it with a switch and a mask, no map or
// string comparison loop.
type algID uint8

const (
	algUnknown algID = iota
	algRS256
	algRS384
	algRS512
	algPS256
	algPS384
	algPS512
	algES256
	algES384
	algES512
	algEdDSA
	algHS256
	algHS384
	algHS512
	algCount
)

// algNames are the canonical names; the request path passes these constants
// (never the token's bytes) on to the key package.
var algNames = [algCount]string{
	"", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
}

// algByName maps an exact (case-sensitive, RFC 7518) name to its id.
func algByName(b []byte) algID {
	switch string(b) {
	case "RS256":
		return algRS256
	case "RS384":
		return algRS384
	case "RS512":
		return algRS512
	case "PS256":
		return algPS256
	case "PS384":
		return algPS384
	case "PS512":
		return algPS512
	case "ES256":
		return algES256
	case "ES384":
		return algES384
	case "ES512":
		return algES512
	case "EdDSA":
		return algEdDSA
	case "HS256":
		return algHS256
	case "HS384":
		return algHS384
	case "HS512":
		return algHS512
	}
	return algUnknown
}

func (a algID) String() string { return algNames[a] }

func (a algID) symmetric() bool { return a >= algHS256 && a <= algHS512 }

// algSet is a set of algIDs.
type algSet uint16

func (s algSet) has(a algID) bool { return a != algUnknown && s&(1<<a) != 0 }

func (s *algSet) add(a algID) { *s |= 1 << a }

// names lists the set in canonical order.
func (s algSet) names() []string {
	var out []string
	for a := algRS256; a < algCount; a++ {
		if s.has(a) {
			out = append(out, algNames[a])
		}
	}
	return out
}

// isNone reports whether b is "none" in any letter case: such a token is
// alg_not_allowed whatever the allow-list says.
func isNone(b []byte) bool {
	if len(b) != 4 {
		return false
	}
	for i, c := range b {
		if c|0x20 != "none"[i] {
			return false
		}
	}
	return true
}
