package wiring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ApplyOps applies JSON patch operations (add, remove, replace; RFC 6902) to a JSON document
// and returns the result. The document is held as generic JSON with numbers kept as written,
// so every field survives, the ones claimguard's Go types do not know included: the mutating
// webhook patches the request's own JSON this way.
func ApplyOps(doc []byte, ops []PatchOp) ([]byte, error) {
	var root any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("decode the document: %w", err)
	}
	for _, op := range ops {
		var value any
		if op.Op != "remove" {
			raw, err := json.Marshal(op.Value)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
			}
			d := json.NewDecoder(bytes.NewReader(raw))
			d.UseNumber()
			if err := d.Decode(&value); err != nil {
				return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
			}
		}
		var err error
		if root, err = applyOp(root, op.Op, pointer(op.Path), value); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op.Op, op.Path, err)
		}
	}
	return json.Marshal(root)
}

// pointer splits a JSON pointer into its unescaped tokens.
func pointer(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks
}

// applyOp applies one operation below node and returns the new node.
func applyOp(node any, op string, path []string, value any) (any, error) {
	if len(path) == 0 {
		if op == "remove" {
			return nil, fmt.Errorf("cannot remove the whole document")
		}
		return value, nil
	}
	tok, rest := path[0], path[1:]
	switch n := node.(type) {
	case map[string]any:
		child, ok := n[tok]
		if len(rest) > 0 {
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			c, err := applyOp(child, op, rest, value)
			if err != nil {
				return nil, err
			}
			n[tok] = c
			return n, nil
		}
		switch op {
		case "add":
			n[tok] = value
		case "replace":
			if !ok {
				return nil, fmt.Errorf("no member %q to replace", tok)
			}
			n[tok] = value
		case "remove":
			if !ok {
				return nil, fmt.Errorf("no member %q to remove", tok)
			}
			delete(n, tok)
		default:
			return nil, fmt.Errorf("unsupported operation %q", op)
		}
		return n, nil
	case []any:
		if tok == "-" && len(rest) == 0 && op == "add" {
			return append(n, value), nil
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || i > len(n) || (i == len(n) && (op != "add" || len(rest) > 0)) {
			return nil, fmt.Errorf("index %q out of range (length %d)", tok, len(n))
		}
		if len(rest) > 0 {
			c, err := applyOp(n[i], op, rest, value)
			if err != nil {
				return nil, err
			}
			n[i] = c
			return n, nil
		}
		switch op {
		case "add":
			n = append(n, nil)
			copy(n[i+1:], n[i:])
			n[i] = value
		case "replace":
			n[i] = value
		case "remove":
			n = append(n[:i], n[i+1:]...)
		default:
			return nil, fmt.Errorf("unsupported operation %q", op)
		}
		return n, nil
	default:
		return nil, fmt.Errorf("%q is not in an object or array", tok)
	}
}
