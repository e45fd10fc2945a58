package keys

// Set is an immutable, concurrency-safe key set with a kid index.
//
// Every method is safe on a nil *Set, which behaves as an empty set, so a never-loaded remote
// source can hand out a usable value.
type Set struct {
	keys  []*Key
	byKID map[string]*Key
	kids  []string
}

// NewSet builds a Set from keys that were already checked (by NewKey or a parse). Keys with an
// empty KID are kept but not indexed; a repeated non-empty KID is an error, because a kid must
// name exactly one key.
func NewSet(keys ...*Key) (*Set, error) {
	s := &Set{keys: make([]*Key, 0, len(keys)), byKID: make(map[string]*Key, len(keys))}
	for i, k := range keys {
		if k == nil {
			return nil, &KeyError{Index: i, Reason: "nil key"}
		}
		if k.KID != "" {
			if _, dup := s.byKID[k.KID]; dup {
				return nil, &KeyError{Index: i, KID: k.KID, Reason: "duplicate kid"}
			}
			s.byKID[k.KID] = k
			s.kids = append(s.kids, k.KID)
		}
		s.keys = append(s.keys, k)
	}
	return s, nil
}

// Lookup returns the key with this kid, or nil when absent. An empty kid matches nothing: keys
// without a kid are found through Keys.
func (s *Set) Lookup(kid string) *Key {
	if s == nil || kid == "" {
		return nil
	}
	return s.byKID[kid]
}

// Keys returns the keys in document order. Callers must not modify the slice or the keys.
func (s *Set) Keys() []*Key {
	if s == nil {
		return nil
	}
	return s.keys
}

// KIDs returns the non-empty kids in document order. Callers must not modify the slice.
func (s *Set) KIDs() []string {
	if s == nil {
		return nil
	}
	return s.kids
}

// Len returns the number of keys.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}
