package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/policyfile"
	"github.com/claimguard/claimguard/webhook/authz"
)

// ExplainOptions configure `claimguard explain`; each field is the flag of
// the same name (see AddFlags for what it means).
type ExplainOptions struct {
	PolicyFile            string
	SecretDir             string
	Policy                string
	Output                string
	Headers               []string
	Path                  string
	MaxTokenBytes         int
	AllowInsecureJWKSHTTP bool
	FetchTimeout          time.Duration

	namespace, name string
}

// maxStdinToken bounds a token read from stdin; anything longer is far over
// every token cap and would only be refused.
const maxStdinToken = 1 << 20

// NewExplainOptions returns the defaults.
func NewExplainOptions() *ExplainOptions {
	return &ExplainOptions{Output: "text", MaxTokenBytes: policy.DefaultMaxTokenBytes, FetchTimeout: 5 * time.Second}
}

// AddFlags registers the options on fs.
func (o *ExplainOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PolicyFile, "policy-file", o.PolicyFile, "File of JWTPolicy manifests, as for serve. Required.")
	fs.StringVar(&o.SecretDir, "secret-dir", o.SecretDir, "Directory of secretRef files (DIR/NS/name/key), as for serve.")
	fs.StringVar(&o.Policy, "policy", o.Policy, "The policy to explain, as NAMESPACE/NAME. Required.")
	fs.StringVarP(&o.Output, "output", "o", o.Output, "Output format: text or json.")
	fs.StringArrayVar(&o.Headers, "header", o.Headers, "Extra request header 'Name: value' (repeatable), e.g. a cookie or X-Original-URL.")
	fs.StringVar(&o.Path, "path", o.Path, "Path of the original request, for public paths (default: from X-Original-URL or X-Forwarded-Uri headers).")
	fs.IntVar(&o.MaxTokenBytes, "max-token-bytes", o.MaxTokenBytes, "Largest token accepted, in bytes, as for serve.")
	fs.BoolVar(&o.AllowInsecureJWKSHTTP, "allow-insecure-jwks-http", o.AllowInsecureJWKSHTTP, "Allow http:// JWKS URIs and issuers (local testing only).")
	fs.DurationVar(&o.FetchTimeout, "fetch-timeout", o.FetchTimeout, "How long to wait for remote key sets (jwks.uri, discovery) before explaining.")
}

// Validate checks the flags and the argument count.
func (o *ExplainOptions) Validate(args []string) error {
	switch {
	case o.PolicyFile == "":
		return usageError("--policy-file is required")
	case o.Policy == "":
		return usageError("--policy NAMESPACE/NAME is required")
	case o.Output != "text" && o.Output != "json":
		return usageError("-o %q: must be text or json", o.Output)
	case len(args) > 1:
		return usageError("one token at most (got %d arguments); use - to read it from stdin", len(args))
	case o.MaxTokenBytes <= 0:
		return usageError("--max-token-bytes %d: must be positive", o.MaxTokenBytes)
	case o.FetchTimeout <= 0:
		return usageError("--fetch-timeout %s: must be positive", o.FetchTimeout)
	}
	ns, name, ok := strings.Cut(o.Policy, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return usageError("--policy %q: want NAMESPACE/NAME", o.Policy)
	}
	o.namespace, o.name = ns, name
	for _, h := range o.Headers {
		if _, _, err := parseHeaderFlag(h); err != nil {
			return usageError("--header %q: %v", h, err)
		}
	}
	return nil
}

func parseHeaderFlag(h string) (string, string, error) {
	name, value, ok := strings.Cut(h, ":")
	name = strings.TrimSpace(name)
	if !ok || !validHeaderName(name) {
		return "", "", errors.New("want 'Name: value'")
	}
	value = strings.TrimSpace(value)
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return "", "", errors.New("the value holds a control character")
		}
	}
	return http.CanonicalHeaderKey(name), value, nil
}

// validHeaderName checks an RFC 9110 field name (a token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func newExplainCommand(_, _ io.Writer) *cobra.Command {
	o := NewExplainOptions()
	cmd := &cobra.Command{
		Use:   "explain --policy-file FILE --policy NS/NAME [TOKEN | -]",
		Short: "Say step by step why a token passes or fails a policy",
		Long: `explain runs a policy of --policy-file on a token, the way the forward-auth
server would, and prints each check: token source, header, alg, key,
signature, time claims, issuer, audience, each required claim and each rule.
The first line is the outcome: "ALLOW" or "DENY <status> <reason>: <why>".
The token is the argument, or stdin with "-". For a policy in Audit mode it
reports what Enforce would decide. It never prints the token or a key.

Exit status: 0 allow, 1 deny, 2 bad input (unknown policy, a policy that does
not compile, no token, bad flags).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(args); err != nil {
				return err
			}
			return o.Run(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// readToken returns the token of the argument or stdin, trimmed.
func readToken(args []string, stdin io.Reader) (string, error) {
	if len(args) == 0 {
		return "", usageError("no token given: pass it as the argument, or - to read it from stdin")
	}
	tok := args[0]
	if tok == "-" {
		if stdin == nil {
			stdin = os.Stdin
		}
		b, err := io.ReadAll(io.LimitReader(stdin, maxStdinToken+1))
		if err != nil {
			return "", usageError("read the token from stdin: %v", err)
		}
		if len(b) > maxStdinToken {
			return "", usageError("the token on stdin is larger than %d bytes", maxStdinToken)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", usageError("no token given: the token is empty")
	}
	return tok, nil
}

// Run explains and prints. It returns nil for an allow, a silent exit-1
// error for a deny, and a usage error for bad input.
func (o *ExplainOptions) Run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	tok, err := readToken(args, stdin)
	if err != nil {
		return err
	}
	docs, err := policyfile.ReadFile(o.PolicyFile)
	if err != nil {
		return usageError("%s", oneLine(strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	doc, err := o.find(docs)
	if err != nil {
		return err
	}
	fetcher := keys.NewFetcher(keys.FetcherOptions{AllowInsecureHTTP: o.AllowInsecureJWKSHTTP, FetchTimeout: o.FetchTimeout})
	compiled, err := policyfile.Compile(o.PolicyFile, []policyfile.Document{*doc}, policyfile.Options{
		SecretDir:         o.SecretDir,
		Fetcher:           fetcher,
		AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
		MaxTokenBytes:     o.MaxTokenBytes,
	})
	if err != nil {
		return usageError("policy %s does not compile: %s", o.Policy, oneLine(strings.ReplaceAll(err.Error(), "\n", "; ")))
	}
	p := compiled.Policies[0]
	// Remote key sets are fetched before explaining (bounded by the fetch
	// timeout); a set that still has not loaded is explained as
	// keys_unavailable with its cause.
	wctx, cancel := context.WithTimeout(ctx, o.FetchTimeout+time.Second)
	_ = p.WaitKeys(wctx)
	cancel()

	req, err := o.request(&doc.Policy.Spec, tok)
	if err != nil {
		return err
	}
	d, trace := p.Explain(req)
	if o.Output == "json" {
		err = writeExplainJSON(stdout, p, d, trace)
	} else {
		err = writeExplainText(stdout, p, d, trace)
	}
	if err != nil {
		return err
	}
	if d.Allowed && !d.Audit {
		return nil
	}
	return &ExitCodeError{Code: ExitDenied}
}

func (o *ExplainOptions) find(docs []policyfile.Document) (*policyfile.Document, error) {
	var names []string
	for i := range docs {
		if docs[i].Policy.Namespace == o.namespace && docs[i].Policy.Name == o.name {
			return &docs[i], nil
		}
		names = append(names, docs[i].Key())
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	return nil, usageError("policy %s is not in %s (it holds %s)", o.Policy, o.PolicyFile, strings.Join(names, ", "))
}

// request builds the auth request: the --header values, and the token in the
// policy's first token source (the Authorization header with the Bearer
// scheme unless the policy says otherwise).
func (o *ExplainOptions) request(spec *authv1alpha1.JWTPolicySpec, tok string) (*policy.Request, error) {
	h := http.Header{}
	for _, line := range o.Headers {
		name, value, _ := parseHeaderFlag(line)
		h[name] = append(h[name], value)
	}
	src := authv1alpha1.TokenSource{Header: &authv1alpha1.HeaderTokenSource{Name: "Authorization", Prefix: "Bearer "}}
	if len(spec.TokenSources) > 0 {
		src = spec.TokenSources[0]
	}
	switch {
	case src.Header != nil:
		name := http.CanonicalHeaderKey(src.Header.Name)
		if _, taken := h[name]; taken {
			return nil, usageError("--header %s: the token goes into that header; give only the token as the argument", name)
		}
		value := tok
		if p := strings.TrimRight(src.Header.Prefix, " "); p != "" {
			value = p + " " + tok
		}
		h[name] = []string{value}
	case src.Cookie != nil:
		h["Cookie"] = append(h["Cookie"], src.Cookie.Name+"="+tok)
	}
	r := &policy.Request{Header: h}
	r.Path, r.PathConflict = authz.OriginalPath(h)
	if o.Path != "" {
		r.Path, r.PathConflict = o.Path, false
	}
	return r, nil
}

// outcomeLine is the first line: "ALLOW", "ALLOW (public path)" or
// "DENY 401 token_expired: ...".
func outcomeLine(d policy.Decision) string {
	switch {
	case d.Public:
		return "ALLOW (public path: the token is not looked at)"
	case d.Allowed && !d.Audit:
		return "ALLOW"
	}
	s := fmt.Sprintf("DENY %d %s", d.Reason.Status(), d.Reason)
	if d.Description != "" {
		s += ": " + d.Description
	}
	return s
}

func writeExplainText(w io.Writer, p *policy.Policy, d policy.Decision, tr *policy.Trace) error {
	var b strings.Builder
	b.WriteString(outcomeLine(d))
	b.WriteByte('\n')
	if p.Mode() == authv1alpha1.ModeAudit {
		fmt.Fprintf(&b, "note: policy %s/%s is in Audit mode: this is what Enforce would decide; the server lets the request through", p.Namespace(), p.Name())
		if d.Reason != "" {
			fmt.Fprintf(&b, " with X-Claimguard-Audit: %s", d.Reason)
		}
		b.WriteByte('\n')
	}
	for _, st := range tr.Steps {
		mark := "ok  "
		if !st.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "  %s %-14s %s\n", mark, st.Name, st.Detail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// explainJSON is the -o json document: the decision and the trace.
type explainJSON struct {
	Policy      string        `json:"policy"`
	Mode        string        `json:"mode"`
	Outcome     string        `json:"outcome"`
	Status      int           `json:"status"`
	Reason      string        `json:"reason,omitempty"`
	Description string        `json:"description,omitempty"`
	Public      bool          `json:"public,omitempty"`
	Steps       []policy.Step `json:"steps"`
}

func writeExplainJSON(w io.Writer, p *policy.Policy, d policy.Decision, tr *policy.Trace) error {
	out := explainJSON{
		Policy:      tr.Policy,
		Mode:        string(p.Mode()),
		Outcome:     "allow",
		Status:      http.StatusOK,
		Reason:      string(d.Reason),
		Description: d.Description,
		Public:      d.Public,
		Steps:       tr.Steps,
	}
	if !d.Allowed || d.Audit {
		out.Outcome, out.Status = "deny", d.Reason.Status()
	}
	if out.Steps == nil {
		out.Steps = []policy.Step{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
