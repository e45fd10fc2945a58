package policy

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseClaimPath(t *testing.T) {
	tests := []struct {
		in      string
		want    ClaimPath
		wantErr error
	}{
		{"sub", ClaimPath{"sub"}, nil},
		{"realm_access.roles", ClaimPath{"realm_access", "roles"}, nil},
		{`https://example\.com/roles`, ClaimPath{"https://example.com/roles"}, nil},
		{`a\\b`, ClaimPath{`a\b`}, nil},
		{`a\\.b`, ClaimPath{`a\`, "b"}, nil},
		{`a\.\.b.c`, ClaimPath{"a..b", "c"}, nil},
		{`\.`, ClaimPath{"."}, nil},
		{"", nil, ErrClaimPathEmptySegment},
		{".a", nil, ErrClaimPathEmptySegment},
		{"a.", nil, ErrClaimPathEmptySegment},
		{"a..b", nil, ErrClaimPathEmptySegment},
		{`a\`, nil, ErrClaimPathBadEscape},
		{`a\n`, nil, ErrClaimPathBadEscape},
		{`a\x.b`, nil, ErrClaimPathBadEscape},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseClaimPath(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	d, err := parseJSON(t, `{"a":{"b":{"c":1}},"s":"x","n":null,"k.d":2}`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want lookupResult
		raw  string
	}{
		{"a.b.c", claimFound, "1"},
		{"a.b", claimFound, `{"c":1}`},
		{"a.x", claimAbsent, ""},
		{"s.x", claimBlocked, ""},
		{"a.b.c.d", claimBlocked, ""},
		{"n", claimFound, "null"},
		{"n.x", claimBlocked, ""},
		{`k\.d`, claimFound, "2"},
		{"k.d", claimAbsent, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p, err := ParseClaimPath(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			n, res := d.lookup(p)
			if res != tt.want {
				t.Fatalf("result = %d, want %d", res, tt.want)
			}
			if res == claimFound && string(d.raw(n)) != tt.raw {
				t.Errorf("raw = %s, want %s", d.raw(n), tt.raw)
			}
		})
	}
}

func FuzzClaimPath(f *testing.F) {
	for _, s := range []string{"sub", "a.b", `https://example\.com/roles`, `a\\b`, `a\`, "..", `\.\\.`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseClaimPath(s)
		if err != nil {
			return
		}
		if len(p) == 0 {
			t.Fatalf("%q parsed to no segments", s)
		}
		for _, seg := range p {
			if seg == "" {
				t.Fatalf("%q has an empty segment", s)
			}
		}
		// Every accepted path has exactly one spelling.
		if p.String() != s {
			t.Fatalf("round trip %q -> %q", s, p.String())
		}
		again, err := ParseClaimPath(p.String())
		if err != nil || !cmp.Equal(p, again) {
			t.Fatalf("reparse of %q: %v %v", p.String(), again, err)
		}
	})
}
