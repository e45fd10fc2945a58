package policyfile

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
)

// Options configure how the policies of a file are compiled.
type Options struct {
	// SecretDir resolves secretRef {name, key} of namespace NS to the file
	// SecretDir/NS/name/key, the layout of a mounted Secret. Empty: every
	// secretRef is unresolvable, and its issuer answers keys_unavailable.
	SecretDir string
	// Fetcher fetches remote key sets (jwks.uri, discovery). Required when a
	// policy uses one; nil only syntax-checks them.
	Fetcher *keys.Fetcher
	// AllowInsecureHTTP allows http:// JWKS URIs (loopback tests).
	AllowInsecureHTTP bool
	// MaxTokenBytes is the token size cap; 0 is the engine's default (8192).
	MaxTokenBytes int
	// Cache is the verified-token cache shared by the policies; nil: none.
	Cache *policy.Cache
	// Clock is the policies' clock; nil: time.Now.
	Clock func() time.Time
}

// Compiled is a policy file turned into policies.
type Compiled struct {
	// Policies in file order.
	Policies []*policy.Policy
	// Documents the policies came from, in the same order.
	Documents []Document
	// Digest covers every input: the file and every secret file read (or its
	// absence). Equal digests mean an equal result, so a watcher can skip
	// reloads that change nothing.
	Digest [sha256.Size]byte
	// SecretFiles are the secret files the policies name (present or not),
	// which a watcher watches too: a rotated secret must reach the policy.
	SecretFiles []string
	// compiled maps each policy's namespace/name to its revision and compiled
	// form, for a later reload to reuse what did not change.
	compiled map[string]revisioned
}

// revisioned is a compiled policy and the revision (document and secrets) it
// was compiled from.
type revisioned struct {
	revision string
	policy   *policy.Policy
}

// Load reads, parses and compiles file. The error, if any, is an *Error with
// one line per problem.
func Load(file string, opts Options) (*Compiled, error) {
	return load(file, opts, nil)
}

// load is Load reusing the policies of prev (compiled with the same opts)
// whose document and secrets did not change: a reload of a large file then
// compiles only what was edited, and the policies it keeps keep their key
// sets (no refetch) and their verified-token cache entries.
func load(file string, opts Options, prev *Compiled) (*Compiled, error) {
	data, err := readBounded(file)
	if err != nil {
		return nil, &Error{Lines: []string{fmt.Sprintf("%s: %v", file, err)}}
	}
	docs, err := Parse(file, data)
	if err != nil {
		return nil, err
	}
	return compile(file, data, docs, opts, prev)
}

// secretReader reads secret files for one compile, remembering what it read
// so the digest and the revisions cover exactly the bytes the policies saw.
type secretReader struct {
	dir   string
	files map[string][]byte // path -> content; nil content: absent
	order []string
}

// secretPath maps a secretRef to its file, refusing names that could leave
// the directory: the name must be a DNS-1123 subdomain (a Secret name) and
// the key a Secret data key ([-._a-zA-Z0-9]+, not "." or "..").
func (r *secretReader) secretPath(namespace, name, key string) (string, error) {
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return "", fmt.Errorf("namespace %q: %s", namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("secret name %q: %s", name, strings.Join(errs, "; "))
	}
	if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
		return "", fmt.Errorf("secret key %q: %s", key, strings.Join(errs, "; "))
	}
	return filepath.Join(r.dir, namespace, name, key), nil
}

// read returns the bytes of a secret file, reading each file once per
// compile.
func (r *secretReader) read(namespace, name, key string) ([]byte, error) {
	if r.dir == "" {
		// Compile names the secret; this error says only what is missing.
		return nil, fmt.Errorf("no --secret-dir given: %w", policy.ErrSecretNotFound)
	}
	path, err := r.secretPath(namespace, name, key)
	if err != nil {
		return nil, err
	}
	data, seen := r.files[path]
	if !seen {
		data, err = os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			data = nil
		case err != nil:
			return nil, fmt.Errorf("read secret file %s: %w", path, err)
		case data == nil:
			data = []byte{} // present but empty: not the same as absent
		}
		r.files[path] = data
		r.order = append(r.order, path)
	}
	if data == nil {
		return nil, fmt.Errorf("secret file %s does not exist: %w", path, policy.ErrSecretNotFound)
	}
	return data, nil
}

// revision hashes a document and the secrets it names, so that editing the
// policy or rotating its secret changes the revision and with it every
// verified-token cache key of the policy.
func (r *secretReader) revision(d *Document) string {
	h := sha256.New()
	h.Write(d.JSON)
	for _, iss := range d.Policy.Spec.Issuers {
		ref := iss.JWKS.SecretRef
		if ref == nil {
			continue
		}
		data, err := r.read(d.Policy.Namespace, ref.Name, ref.Key)
		fmt.Fprintf(h, "\x00%s/%s/%s\x00%d\x00", d.Policy.Namespace, ref.Name, ref.Key, len(data))
		h.Write(data)
		if err != nil {
			h.Write([]byte(err.Error()))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Compile compiles documents already parsed from file (explain compiles only
// the one it explains). Its Digest covers the documents, not the whole file.
func Compile(file string, docs []Document, opts Options) (*Compiled, error) {
	var data []byte
	for _, d := range docs {
		data = append(data, d.JSON...)
		data = append(data, 0)
	}
	return compile(file, data, docs, opts, nil)
}

func compile(file string, data []byte, docs []Document, opts Options, prev *Compiled) (*Compiled, error) {
	sr := &secretReader{dir: opts.SecretDir, files: map[string][]byte{}}
	out := &Compiled{Documents: docs, compiled: make(map[string]revisioned, len(docs))}
	errs := &Error{}
	for i := range docs {
		d := &docs[i]
		rev := sr.revision(d)
		if prev != nil {
			if old, ok := prev.compiled[d.Key()]; ok && old.revision == rev {
				out.Policies = append(out.Policies, old.policy)
				out.compiled[d.Key()] = old
				continue
			}
		}
		p, ferrs := policy.Compile(&d.Policy.Spec, policy.CompileOptions{
			Namespace:         d.Policy.Namespace,
			Name:              d.Policy.Name,
			Revision:          rev,
			Fetcher:           opts.Fetcher,
			Secrets:           sr.read,
			AllowInsecureHTTP: opts.AllowInsecureHTTP,
			MaxTokenBytes:     opts.MaxTokenBytes,
			Cache:             opts.Cache,
			Clock:             opts.Clock,
		})
		for _, fe := range ferrs {
			errs.add("%s: document %d (%s): %s", file, d.Index, d.Key(), FieldErrorLine(fe))
		}
		if len(ferrs) == 0 {
			out.Policies = append(out.Policies, p)
			out.compiled[d.Key()] = revisioned{revision: rev, policy: p}
		}
	}
	if err := errs.orNil(); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(data)
	for _, path := range sr.order {
		content := sr.files[path]
		fmt.Fprintf(h, "\x00%s\x00%t\x00%d\x00", path, content != nil, len(content))
		h.Write(content)
	}
	copy(out.Digest[:], h.Sum(nil))
	out.SecretFiles = sr.order
	return out, nil
}

// FieldErrorLine formats a compile error as "<field path>: <reason>". The
// offending value is left out on purpose: for an inline key set it would be
// the whole JWKS, possibly with the private key that got it refused.
func FieldErrorLine(e *field.Error) string {
	body := e.Detail
	if body == "" {
		body = e.Type.String()
	}
	if e.Field == "" {
		return oneLine(body)
	}
	return e.Field + ": " + oneLine(body)
}

// Digest hashes the inputs a previous compile read (the file and the secret
// files) as they are now, with the same construction as Compiled.Digest, so
// a poller can tell whether anything changed without compiling.
func Digest(file string, secretFiles []string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	data, err := readBounded(file)
	if err != nil {
		return sum, err
	}
	h := sha256.New()
	h.Write(data)
	for _, path := range secretFiles {
		content, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			content = nil
		case err != nil:
			return sum, err
		case content == nil:
			content = []byte{}
		}
		fmt.Fprintf(h, "\x00%s\x00%t\x00%d\x00", path, content != nil, len(content))
		h.Write(content)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
