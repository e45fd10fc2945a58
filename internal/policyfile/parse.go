package policyfile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// DefaultNamespace is the namespace of a document without metadata.namespace,
// as kubectl apply does with the default context.
const DefaultNamespace = "default"

// MaxFileBytes bounds a policy file. Thousands of policies fit; a larger file
// is far more likely a mistake (a log, a binary) than a policy set, and
// reading it whole on every change would hurt.
const MaxFileBytes = 16 << 20

// Document is one JWTPolicy read from a policy file.
type Document struct {
	// Index is the document's position in the file, counting from 1 and
	// counting every "---"-separated document, empty ones included, so it is
	// the number a person finds by counting separators.
	Index int
	// Policy is the decoded object, with metadata.namespace defaulted.
	Policy *authv1alpha1.JWTPolicy
	// JSON is the document as JSON, the input of the policy's revision.
	JSON []byte
}

// Key returns "namespace/name".
func (d *Document) Key() string { return d.Policy.Namespace + "/" + d.Policy.Name }

// Error lists everything wrong with a policy file, one line per problem, each
// naming the file, the document and the field:
//
//	policies.yaml: document 2 (shop/orders-api): spec.issuers[0].jwks.uri: must be an https URL
type Error struct {
	Lines []string
}

// Error joins the lines with newlines.
func (e *Error) Error() string { return strings.Join(e.Lines, "\n") }

func (e *Error) add(format string, args ...any) {
	e.Lines = append(e.Lines, fmt.Sprintf(format, args...))
}

func (e *Error) orNil() error {
	if e == nil || len(e.Lines) == 0 {
		return nil
	}
	return e
}

// decoder decodes JWTPolicy JSON strictly: an unknown or duplicate field is an
// error naming its path, as `kubectl apply --validate=strict` would report it.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	if err := authv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// ReadFile reads and parses a policy file (see Parse).
func ReadFile(file string) ([]Document, error) {
	data, err := readBounded(file)
	if err != nil {
		return nil, &Error{Lines: []string{fmt.Sprintf("%s: %v", file, err)}}
	}
	return Parse(file, data)
}

// readBounded reads file, refusing one larger than MaxFileBytes. A regular
// file's size is checked before anything is read, and its content is read into
// one buffer of that size: refusing a huge file costs no memory, and reading a
// large one costs its size, not the growth steps of io.ReadAll. Whatever the
// file does while it is read, at most MaxFileBytes+1 bytes are.
func readBounded(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tooLarge := fmt.Errorf("file is larger than %d MiB", MaxFileBytes>>20)
	capacity := int64(bytes.MinRead)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if st.Size() > MaxFileBytes {
			return nil, tooLarge
		}
		capacity = st.Size() + bytes.MinRead // room to see the end of the file without growing
	}
	buf := bytes.NewBuffer(make([]byte, 0, capacity))
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileBytes+1)); err != nil {
		return nil, err
	}
	if buf.Len() > MaxFileBytes {
		return nil, tooLarge
	}
	return buf.Bytes(), nil
}

// Parse splits data (YAML or JSON, several documents separated by "---") into
// JWTPolicy documents. file only names the input in errors.
//
// The rules follow `kubectl apply`: empty documents are ignored, a missing
// metadata.namespace is "default", unknown fields are refused. Every document
// must be a JWTPolicy of auth.claimguard.dev/v1alpha1: a file that mixes in
// other kinds is refused rather than half-read, since silently skipping a
// document would also skip a policy whose kind has a typo. The same
// namespace/name twice, and a file without any policy, are errors too. All
// problems of the file are reported, not only the first.
func Parse(file string, data []byte) ([]Document, error) {
	errs := &Error{}
	var docs []Document
	seen := map[string]int{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for index := 1; ; index++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs.add("%s: document %d: %v", file, index, err)
			break
		}
		doc, err := parseDocument(raw)
		if err != nil {
			for _, msg := range problems(err) {
				errs.add("%s: document %d%s: %s", file, index, docName(doc), msg)
			}
			continue
		}
		if doc == nil {
			continue // empty document
		}
		d := Document{Index: index, Policy: doc.policy, JSON: doc.json}
		if first, dup := seen[d.Key()]; dup {
			errs.add("%s: document %d (%s): metadata.name: Duplicate value: %q is already defined by document %d", file, index, d.Key(), d.Policy.Name, first)
			continue
		}
		seen[d.Key()] = index
		docs = append(docs, d)
	}
	if len(errs.Lines) == 0 && len(docs) == 0 {
		errs.add("%s: no JWTPolicy documents (apiVersion: %s, kind: JWTPolicy)", file, authv1alpha1.GroupVersion.String())
	}
	if err := errs.orNil(); err != nil {
		return nil, err
	}
	return docs, nil
}

type parsed struct {
	policy *authv1alpha1.JWTPolicy
	json   []byte
	// ns and name are known as soon as metadata decodes, for error lines.
	ns, name string
}

func docName(p *parsed) string {
	if p == nil || p.name == "" {
		return ""
	}
	return " (" + p.ns + "/" + p.name + ")"
}

// parseDocument decodes one document; (nil, nil) for an empty one. On error
// the returned value may still carry the document's name.
func parseDocument(raw []byte) (*parsed, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || bytes.Equal(js, []byte("null")) {
		return nil, nil
	}
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if js[0] != '{' {
		return nil, errors.New("not an object: a document must be a JWTPolicy manifest")
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("apiVersion, kind or metadata has the wrong type: %w", err)
	}
	p := &parsed{ns: head.Metadata.Namespace, name: head.Metadata.Name}
	if p.ns == "" {
		p.ns = DefaultNamespace
	}
	gv := authv1alpha1.GroupVersion.String()
	if head.Kind != "JWTPolicy" || head.APIVersion != gv {
		return p, fmt.Errorf("kind %q of apiVersion %q is not a JWTPolicy: only apiVersion: %s, kind: JWTPolicy documents are read", head.Kind, head.APIVersion, gv)
	}
	obj := &authv1alpha1.JWTPolicy{}
	if _, _, err := decoder.Decode(js, nil, obj); err != nil {
		return p, err
	}
	if obj.Namespace == "" {
		obj.Namespace = DefaultNamespace
	}
	switch {
	case obj.Name == "":
		return p, errors.New("metadata.name: Required value")
	case len(validation.IsDNS1123Subdomain(obj.Name)) > 0:
		return p, fmt.Errorf("metadata.name: Invalid value: %q: %s", obj.Name, strings.Join(validation.IsDNS1123Subdomain(obj.Name), "; "))
	case len(validation.IsDNS1123Label(obj.Namespace)) > 0:
		return p, fmt.Errorf("metadata.namespace: Invalid value: %q: %s", obj.Namespace, strings.Join(validation.IsDNS1123Label(obj.Namespace), "; "))
	}
	p.policy, p.json = obj, js
	return p, nil
}

// problems splits a decoding error into one message per field: a strict
// decoding error lists every unknown or duplicate field, each becomes
// `spec.issuers[0].foo: unknown field`.
func problems(err error) []string {
	strict, ok := runtime.AsStrictDecodingError(err)
	if !ok {
		return []string{oneLine(err.Error())}
	}
	var out []string
	for _, e := range strict.Errors() {
		msg := e.Error()
		for _, kind := range []string{"unknown field ", "duplicate field "} {
			if path, ok := strings.CutPrefix(msg, kind); ok {
				if unq, err := strconv.Unquote(path); err == nil {
					msg = unq + ": " + strings.TrimSpace(kind)
				}
			}
		}
		out = append(out, oneLine(msg))
	}
	return out
}

// oneLine folds an error text onto one line: every problem is one line of the
// report.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
