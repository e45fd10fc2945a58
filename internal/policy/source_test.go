package policy

import (
	"net/http"
	"testing"
)

func TestTokenSourceExtract(t *testing.T) {
	bearer := tokenSource{header: "Authorization", scheme: "Bearer"}
	raw := tokenSource{header: "X-Token"}
	cookie := tokenSource{cookie: "access_token"}
	tests := []struct {
		name    string
		src     tokenSource
		header  http.Header
		want    string
		wantRes sourceResult
	}{
		{"bearer", bearer, http.Header{"Authorization": {"Bearer abc"}}, "abc", sourceToken},
		{"lower case scheme", bearer, http.Header{"Authorization": {"bearer abc"}}, "abc", sourceToken},
		{"upper case scheme", bearer, http.Header{"Authorization": {"BEARER abc"}}, "abc", sourceToken},
		{"several spaces", bearer, http.Header{"Authorization": {"Bearer    abc"}}, "abc", sourceToken},
		{"trailing space", bearer, http.Header{"Authorization": {"Bearer abc  "}}, "abc", sourceToken},
		{"absent", bearer, http.Header{}, "", sourceAbsent},
		{"other scheme", bearer, http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, "", sourceAbsent},
		{"raw token", bearer, http.Header{"Authorization": {"eyJhbGciOi.x.y"}}, "", sourceAbsent},
		{"glued", bearer, http.Header{"Authorization": {"Bearertoken"}}, "", sourceAbsent},
		{"tab after scheme", bearer, http.Header{"Authorization": {"Bearer\tabc"}}, "", sourceAbsent},
		{"scheme alone", bearer, http.Header{"Authorization": {"Bearer"}}, "", sourceMalformed},
		{"scheme and spaces", bearer, http.Header{"Authorization": {"Bearer   "}}, "", sourceMalformed},
		{"repeated", bearer, http.Header{"Authorization": {"Bearer a", "Bearer b"}}, "", sourceMalformed},
		{"repeated with basic", bearer, http.Header{"Authorization": {"Basic x", "Bearer b"}}, "", sourceMalformed},
		{"repeated other schemes", bearer, http.Header{"Authorization": {"Basic x", "Basic y"}}, "", sourceAbsent},
		{"raw header", raw, http.Header{"X-Token": {" abc "}}, "abc", sourceToken},
		{"raw header empty", raw, http.Header{"X-Token": {""}}, "", sourceMalformed},
		{"cookie", cookie, http.Header{"Cookie": {"a=1; access_token=abc; b=2"}}, "abc", sourceToken},
		{"cookie quoted", cookie, http.Header{"Cookie": {`access_token="abc"`}}, "abc", sourceToken},
		{"cookie second line", cookie, http.Header{"Cookie": {"a=1", "access_token=abc"}}, "abc", sourceToken},
		{"cookie absent", cookie, http.Header{"Cookie": {"a=1; access_token_x=abc"}}, "", sourceAbsent},
		{"no cookie header", cookie, http.Header{}, "", sourceAbsent},
		{"cookie repeated", cookie, http.Header{"Cookie": {"access_token=a; access_token=b"}}, "", sourceMalformed},
		{"cookie repeated across lines", cookie, http.Header{"Cookie": {"access_token=a", "access_token=b"}}, "", sourceMalformed},
		{"cookie empty", cookie, http.Header{"Cookie": {"access_token="}}, "", sourceMalformed},
		{"cookie name is case sensitive", cookie, http.Header{"Cookie": {"Access_Token=abc"}}, "", sourceAbsent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res, why := tt.src.extract(tt.header)
			if got != tt.want || res != tt.wantRes {
				t.Errorf("extract = %q, %d; want %q, %d", got, res, tt.want, tt.wantRes)
			}
			if (res == sourceMalformed) != (why != "") {
				t.Errorf("reason %q for result %d", why, res)
			}
		})
	}
}

func TestAppendB64URL(t *testing.T) {
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"", "", true},
		{"YQ", "a", true},
		{"YWI", "ab", true},
		{"YWJj", "abc", true},
		{"-_8", "\xfb\xff", true},
		{"YQ==", "", false},   // padding
		{"YR", "", false},     // non-zero trailing bits
		{"YWJ", "", false},    // non-zero trailing bits
		{"Y", "", false},      // impossible length
		{"YW+j", "", false},   // standard alphabet
		{"YW/j", "", false},   // standard alphabet
		{"YW j", "", false},   // whitespace
		{"YWJj\n", "", false}, // newline
	}
	for _, tt := range tests {
		got, ok := appendB64URL(nil, tt.in)
		if ok != tt.wantOK || (ok && string(got) != tt.want) {
			t.Errorf("appendB64URL(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
