package policy

// The JWS segments are decoded with this strict base64url decoder rather than
// encoding/base64 because the token is a string (the header value) and
// encoding/base64 decodes only []byte, which would cost a copy per segment.
// Strict means: the URL-safe alphabet only, no padding, no whitespace, and
// zero unused trailing bits, so every token has exactly one encoding (RFC 7515
// §2 and RFC 4648 §3.5 canonical encoding).

var b64Table = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// b64DecodedLen is the decoded length of n base64url characters.
func b64DecodedLen(n int) int { return n * 6 / 8 }

// appendB64URL decodes s and appends it to dst; ok is false on any invalid
// character, an impossible length, or non-zero trailing bits.
func appendB64URL(dst []byte, s string) ([]byte, bool) {
	if len(s)%4 == 1 {
		return dst, false
	}
	i := 0
	for ; i+4 <= len(s); i += 4 {
		a, b, c, d := b64Table[s[i]], b64Table[s[i+1]], b64Table[s[i+2]], b64Table[s[i+3]]
		if a|b|c|d == 0xff {
			return dst, false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst = append(dst, byte(v>>16), byte(v>>8), byte(v))
	}
	switch len(s) - i {
	case 2:
		a, b := b64Table[s[i]], b64Table[s[i+1]]
		if a|b == 0xff || b&0x0f != 0 {
			return dst, false
		}
		dst = append(dst, a<<2|b>>4)
	case 3:
		a, b, c := b64Table[s[i]], b64Table[s[i+1]], b64Table[s[i+2]]
		if a|b|c == 0xff || c&0x03 != 0 {
			return dst, false
		}
		v := uint32(a)<<12 | uint32(b)<<6 | uint32(c)
		dst = append(dst, byte(v>>10), byte(v>>2))
	}
	return dst, true
}
