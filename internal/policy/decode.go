package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// Decode parses a file of objects: YAML documents separated by "---" lines,
// or a stream of JSON objects. Empty documents are skipped. Decoding is
// strict: unknown fields, duplicate keys, values of the wrong type and an
// unsupported apiVersion or kind are errors, each naming the document and
// the field. All such problems are reported together, except that a YAML
// or JSON syntax error ends the input.
//
// Decode fills in the namespace of namespaced objects that name none
// (DefaultNamespace) but does no semantic checks: call Validate on each
// object before using it.
func Decode(data []byte) ([]Object, error) {
	var objs []Object
	var errs []error
	for _, doc := range parseStream(data) {
		if doc.err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", doc.index, doc.err))
			continue
		}
		if doc.root == nil {
			continue // empty document
		}
		obj, err := decodeDocument(doc.root, "", fmt.Sprintf("document %d", doc.index))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(objs) == 0 {
		return nil, errors.New("no objects found: the input is empty or holds only comments")
	}
	return objs, nil
}

// Unmarshal decodes one object of the given canonical kind from JSON, as
// written by Marshal. It is as strict as Decode.
func Unmarshal(kind string, data []byte) (Object, error) {
	if _, ok := lookupKind(kind); !ok {
		return nil, fmt.Errorf("unknown kind %q (known kinds: %s)", kind, knownKinds())
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	root, err := readJSONValue(dec)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", kind, noEOF(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: invalid JSON: data after the object", kind)
	}
	return decodeDocument(root, kind, "object")
}

// decodeDocument decodes the tree of one document. If want is set the
// document must be of that kind. where names the document in errors.
func decodeDocument(root any, want, where string) (Object, error) {
	m, ok := root.(yaml.MapSlice)
	if !ok {
		return nil, fmt.Errorf("%s: want an object (a mapping with apiVersion, kind, metadata and spec), got %s", where, describe(root))
	}
	apiVersion, _ := lookup(m, "apiVersion")
	kindNode, _ := lookup(m, "kind")
	kind, _ := kindNode.(string)
	var name string
	if md, ok := lookup(m, "metadata"); ok {
		if md, ok := md.(yaml.MapSlice); ok {
			n, _ := lookup(md, "name")
			name, _ = n.(string)
		}
	}
	if _, ok := lookupKind(kind); ok {
		if name != "" {
			where += fmt.Sprintf(" (%s %q)", kind, name)
		} else {
			where += fmt.Sprintf(" (%s)", kind)
		}
	}

	var errs []error
	switch apiVersion.(type) {
	case nil:
		errs = append(errs, fmt.Errorf("%s: apiVersion is missing: want %q", where, APIVersion))
	case string:
		if apiVersion != APIVersion {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q is not supported: want %q", where, apiVersion, APIVersion))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: apiVersion: want the string %q, got %s", where, APIVersion, describe(apiVersion)))
	}
	info, known := lookupKind(kind)
	switch _, isString := kindNode.(string); {
	case kindNode == nil:
		errs = append(errs, fmt.Errorf("%s: kind is missing: want one of %s", where, knownKinds()))
	case !isString:
		errs = append(errs, fmt.Errorf("%s: kind: want a string, one of %s; got %s", where, knownKinds(), describe(kindNode)))
	case !known:
		hint := "supported kinds: " + knownKinds()
		if k, ok := resolveKind(kind); ok {
			hint = fmt.Sprintf("did you mean %q?", k)
		}
		errs = append(errs, fmt.Errorf("%s: unknown kind %q (%s)", where, kind, hint))
	case want != "" && kind != want:
		errs = append(errs, fmt.Errorf("%s: kind %q: want %q", where, kind, want))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	obj := info.new()
	d := &treeDecoder{}
	d.decode("", m, reflect.ValueOf(obj).Elem())
	if len(d.errs) > 0 {
		for i, err := range d.errs {
			d.errs[i] = fmt.Errorf("%s: %w", where, err)
		}
		return nil, errors.Join(d.errs...)
	}
	if meta := obj.GetMeta(); obj.Namespaced() && meta.Namespace == "" {
		meta.Namespace = DefaultNamespace
	}
	return obj, nil
}

// nodeUnmarshaler is implemented by types that decode themselves from a
// tree node, such as *Duration.
type nodeUnmarshaler interface {
	unmarshalNode(n any) error
}

var nodeUnmarshalerType = reflect.TypeFor[nodeUnmarshaler]()

// treeDecoder decodes a tree into a Go value by its json tags, collecting
// every problem with its field path.
type treeDecoder struct {
	errs []error
}

func (d *treeDecoder) fail(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	d.errs = append(d.errs, errors.New(msg))
}

// decode stores n in out. A null node leaves out at its zero value; empty
// lists and mappings decode to nil so that a decoded object equals itself
// after a round trip through Marshal, which omits them.
func (d *treeDecoder) decode(path string, n any, out reflect.Value) {
	if n == nil {
		return
	}
	if out.CanAddr() && out.Addr().Type().Implements(nodeUnmarshalerType) {
		if err := out.Addr().Interface().(nodeUnmarshaler).unmarshalNode(n); err != nil {
			d.fail(path, "%v", err)
		}
		return
	}
	switch out.Kind() {
	case reflect.Struct:
		m, ok := n.(yaml.MapSlice)
		if !ok {
			d.fail(path, "want a mapping, got %s", describe(n))
			return
		}
		d.decodeStruct(path, m, out)
	case reflect.String:
		s, ok := n.(string)
		if !ok {
			d.fail(path, "want a string, got %s; quote the value if it is meant as a string", describe(n))
			return
		}
		out.SetString(s)
	case reflect.Bool:
		b, ok := n.(bool)
		if !ok {
			d.fail(path, "want true or false, got %s", describe(n))
			return
		}
		out.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if u, ok := n.(uint64); ok {
			d.fail(path, "%d is out of range for a %d-bit integer", u, out.Type().Bits())
			return
		}
		i, ok := n.(int64)
		if !ok {
			d.fail(path, "want an integer, got %s", describe(n))
			return
		}
		if out.OverflowInt(i) {
			d.fail(path, "%d is out of range for a %d-bit integer", i, out.Type().Bits())
			return
		}
		out.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		switch v := n.(type) {
		case int64:
			if v < 0 {
				d.fail(path, "want a number from 0 up, got %s", describe(n))
				return
			}
			u = uint64(v)
		case uint64:
			u = v
		default:
			d.fail(path, "want an integer, got %s", describe(n))
			return
		}
		if out.OverflowUint(u) {
			d.fail(path, "%d is out of range for a %d-bit unsigned integer", u, out.Type().Bits())
			return
		}
		out.SetUint(u)
	case reflect.Pointer:
		p := reflect.New(out.Type().Elem())
		d.decode(path, n, p.Elem())
		out.Set(p)
	case reflect.Slice:
		l, ok := n.([]any)
		if !ok {
			d.fail(path, "want a list, got %s", describe(n))
			return
		}
		if len(l) == 0 {
			return
		}
		s := reflect.MakeSlice(out.Type(), len(l), len(l))
		for i, e := range l {
			d.decode(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i))
		}
		out.Set(s)
	case reflect.Map:
		m, ok := n.(yaml.MapSlice)
		if !ok {
			d.fail(path, "want a mapping, got %s", describe(n))
			return
		}
		if len(m) == 0 {
			return
		}
		mv := reflect.MakeMapWithSize(out.Type(), len(m))
		for _, it := range m {
			kpath, k, ok := d.mapKey(path, it.Key, out.Type().Key())
			if !ok {
				continue
			}
			if mv.MapIndex(k).IsValid() {
				// "8080" and 8080 in one mapping.
				d.fail(kpath, "the key %v is repeated; a key may appear only once in a mapping", k)
				continue
			}
			e := reflect.New(out.Type().Elem()).Elem()
			d.decode(kpath, it.Value, e)
			mv.SetMapIndex(k, e)
		}
		out.Set(mv)
	default:
		// Only the kinds above appear in object types; a new field type
		// needs a case here (the round-trip tests catch a missing one).
		d.fail(path, "internal error: cannot decode into %s", out.Type())
	}
}

// mapKey converts the key of a mapping entry to a key of Go map type t and
// returns the path of the entry. Maps with string keys take string keys;
// maps with unsigned integer keys take integers and decimal strings (JSON
// object keys are strings: {"8080": ...}).
func (d *treeDecoder) mapKey(path string, key any, t reflect.Type) (string, reflect.Value, bool) {
	switch t.Kind() {
	case reflect.String:
		s, ok := key.(string)
		if !ok {
			d.fail(path, "mapping keys must be strings, got %s; quote it", describe(key))
			return "", reflect.Value{}, false
		}
		return fmt.Sprintf("%s[%q]", path, s), reflect.ValueOf(s).Convert(t), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		var kpath string
		switch k := key.(type) {
		case int64:
			kpath = fmt.Sprintf("%s[%d]", path, k)
			if k < 0 {
				d.fail(kpath, "want an integer key from 0 up, got %s", describe(key))
				return "", reflect.Value{}, false
			}
			u = uint64(k)
		case uint64:
			kpath = fmt.Sprintf("%s[%d]", path, k)
			u = k
		case string:
			kpath = fmt.Sprintf("%s[%q]", path, k)
			v, err := strconv.ParseUint(k, 10, 64)
			switch {
			case errors.Is(err, strconv.ErrRange):
				d.fail(kpath, "%s is out of range for a %d-bit unsigned integer", k, t.Bits())
				return "", reflect.Value{}, false
			case err != nil || strconv.FormatUint(v, 10) != k:
				d.fail(kpath, "want an integer key, such as 8080, got %s", describe(key))
				return "", reflect.Value{}, false
			}
			u = v
		default:
			d.fail(fmt.Sprintf("%s[%v]", path, key), "want an integer key, such as 8080, got %s", describe(key))
			return "", reflect.Value{}, false
		}
		if reflect.Zero(t).OverflowUint(u) {
			d.fail(kpath, "%d is out of range for a %d-bit unsigned integer", u, t.Bits())
			return "", reflect.Value{}, false
		}
		return kpath, reflect.ValueOf(u).Convert(t), true
	default:
		// Only the key kinds above appear in object types.
		d.fail(path, "internal error: cannot decode map keys into %s", t)
		return "", reflect.Value{}, false
	}
}

func (d *treeDecoder) decodeStruct(path string, m yaml.MapSlice, out reflect.Value) {
	fields := jsonFields(out.Type())
	for _, it := range m {
		k, ok := it.Key.(string)
		if !ok {
			d.fail(path, "field names must be strings, got %s", describe(it.Key))
			continue
		}
		fpath := k
		if path != "" {
			fpath = path + "." + k
		}
		i, ok := fields[k]
		if !ok {
			d.fail("", "unknown field %q (%s)", fpath, suggestField(k, fields))
			continue
		}
		d.decode(fpath, it.Value, out.Field(i))
	}
}

// jsonFields maps the json names of t's fields to their indices.
func jsonFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		fields[name] = i
	}
	return fields
}

// suggestField says which known field an unknown one may have meant.
func suggestField(k string, fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	best, bestDist := "", 3 // suggest only close matches
	for _, name := range names {
		if strings.EqualFold(name, k) {
			return fmt.Sprintf("did you mean %q? field names are case-sensitive", name)
		}
		if dist := editDistance(strings.ToLower(k), strings.ToLower(name)); dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	slices.Sort(names)
	return "known fields: " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not worth comparing
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Marshal encodes obj as canonical JSON, the form the store keeps: fields in
// a fixed order, map keys sorted, empty optional fields left out, apiVersion
// and kind always set. Marshal does not validate obj, and it keeps
// metadata.revision and creationRevision as they are.
func Marshal(obj Object) ([]byte, error) {
	ko, err := registered(obj)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ko.withTypeMeta()); err != nil {
		return nil, fmt.Errorf("%s: %w", objectName(obj), err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ToYAML encodes obj as YAML, with the fields in the same order as Marshal.
func ToYAML(obj Object) ([]byte, error) {
	data, err := Marshal(obj)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tree, err := readJSONValue(dec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", objectName(obj), err)
	}
	if hasMergeKey(tree) {
		// The YAML encoder writes a "<<" key unquoted, which reads back as
		// a merge. JSON is YAML too, and such an object is invalid anyway.
		return append(data, '\n'), nil
	}
	return yaml.Marshal(tree)
}

// hasMergeKey reports whether a mapping in the tree has the key "<<".
func hasMergeKey(n any) bool {
	switch n := n.(type) {
	case yaml.MapSlice:
		for _, it := range n {
			if it.Key == "<<" || hasMergeKey(it.Value) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(n, hasMergeKey)
	}
	return false
}

// registered returns obj as a kindObject if it is a non-nil object of a
// registered kind.
func registered(obj Object) (kindObject, error) {
	ko, ok := obj.(kindObject)
	if !ok || reflect.ValueOf(obj).IsNil() {
		return nil, fmt.Errorf("not a trustmesh object: %T", obj)
	}
	if _, ok := lookupKind(ko.GetKind()); !ok {
		return nil, fmt.Errorf("kind %q is not registered", ko.GetKind())
	}
	return ko, nil
}
