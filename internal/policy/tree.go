package policy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v2"
)

// A document is parsed into a tree of plain values before it is decoded into
// a typed object, so that every problem can be reported with its field path.
// The nodes of a tree are:
//
//	yaml.MapSlice  a mapping; keys are unique scalars (see below)
//	[]any          a list
//	string, bool, nil
//	int64, uint64  integers (uint64 only above math.MaxInt64)
//	float64        other numbers
//
// Mapping keys parsed from JSON are strings. Keys parsed from YAML are
// scalars, as written: "8080:" is the integer 8080. The decoder accepts
// integer keys (and strings of digits) only for maps with integer keys, such
// as spec.portLevelMtls, and string keys everywhere else.
//
// Mappings parsed from YAML are sorted by key (see compareKeys); mappings
// parsed from JSON keep their order.

// document is one parsed document of an input stream.
type document struct {
	// index counts documents from 1, empty ones included.
	index int
	// root is nil for an empty document.
	root any
	// err is set if the document could not be parsed; root is then nil.
	err error
}

// parseStream splits data into documents and parses each. Input whose first
// non-blank character is "{" is read as a stream of JSON objects, anything
// else as YAML (documents separated by "---"). A syntax error ends the
// stream: it is the last document returned.
func parseStream(data []byte) []document {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseJSONStream(t)
	}
	return parseYAMLStream(data)
}

func parseYAMLStream(data []byte) []document {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.SetStrict(true) // duplicate keys are errors
	var docs []document
	for i := 1; ; i++ {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			var terr *yaml.TypeError
			if errors.As(err, &terr) {
				// A semantic error such as a duplicate key: the parser is
				// still in step, go on with the next document.
				docs = append(docs, document{index: i, err: typeError(terr)})
				continue
			}
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			return append(docs, document{index: i, err: fmt.Errorf("invalid YAML: %s", msg)})
		}
		n, err := normalizeYAML("", v)
		docs = append(docs, document{index: i, root: n, err: err})
	}
}

// typeError rewords the errors of the strict YAML decoder, which are about
// repeated keys: "line 5: key "name" already set in map".
func typeError(terr *yaml.TypeError) error {
	msgs := make([]string, len(terr.Errors))
	for i, m := range terr.Errors {
		msgs[i] = strings.Replace(m, "already set in map", "is repeated; a key may appear only once in a mapping", 1)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// normalizeYAML turns what the YAML decoder produced into a tree. path is
// the field path of v, for errors.
func normalizeYAML(path string, v any) (any, error) {
	switch v := v.(type) {
	case nil, string, bool, float64:
		return v, nil
	case int:
		return int64(v), nil
	case int64:
		return v, nil
	case uint64:
		if v <= math.MaxInt64 {
			return int64(v), nil
		}
		return v, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			n, err := normalizeYAML(fmt.Sprintf("%s[%d]", path, i), e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[any]any:
		out := make(yaml.MapSlice, 0, len(v))
		for k, e := range v {
			key, err := normalizeYAML(path, k)
			if err != nil {
				return nil, err
			}
			var epath string
			switch key := key.(type) {
			case string:
				epath = key
				if path != "" {
					epath = path + "." + key
				}
			case yaml.MapSlice, []any:
				where := ""
				if path != "" {
					where = path + ": "
				}
				return nil, fmt.Errorf("%smapping keys must be strings, got %s", where, describe(key))
			default:
				epath = fmt.Sprintf("%s[%v]", path, key)
			}
			n, err := normalizeYAML(epath, e)
			if err != nil {
				return nil, err
			}
			out = append(out, yaml.MapItem{Key: key, Value: n})
		}
		slices.SortFunc(out, func(a, b yaml.MapItem) int { return compareKeys(a.Key, b.Key) })
		return out, nil
	default:
		return nil, fmt.Errorf("%s: unsupported YAML value of type %T", path, v)
	}
}

// compareKeys orders the scalar keys of a YAML mapping: strings first, in
// byte order, then integers, other numbers, booleans and null.
func compareKeys(a, b any) int {
	if c := cmp.Compare(keyRank(a), keyRank(b)); c != 0 {
		return c
	}
	switch a := a.(type) {
	case string:
		return strings.Compare(a, b.(string))
	case int64:
		return cmp.Compare(a, b.(int64))
	case uint64:
		return cmp.Compare(a, b.(uint64))
	case float64:
		return cmp.Compare(a, b.(float64))
	case bool:
		switch b := b.(bool); {
		case a == b:
			return 0
		case !a:
			return -1
		}
		return 1
	}
	return 0
}

// keyRank orders the types of mapping keys for compareKeys. An int64 ranks
// before a uint64, which is always larger.
func keyRank(k any) int {
	switch k.(type) {
	case string:
		return 0
	case int64:
		return 1
	case uint64:
		return 2
	case float64:
		return 3
	case bool:
		return 4
	}
	return 5
}

func parseJSONStream(data []byte) []document {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []document
	for i := 1; ; i++ {
		v, err := readJSONValue(dec)
		if errors.Is(err, io.EOF) && i > 1 {
			return docs
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return append(docs, document{index: i, err: fmt.Errorf("invalid JSON: %w", err)})
		}
		docs = append(docs, document{index: i, root: v})
	}
}

// maxJSONDepth bounds the nesting of JSON input, which json.Decoder.Token
// does not; objects are a few levels deep.
const maxJSONDepth = 100

// readJSONValue reads one JSON value from dec into a tree, rejecting
// duplicate keys. It returns io.EOF only if the stream ended before the value.
func readJSONValue(dec *json.Decoder) (any, error) {
	return readJSON(dec, 0)
}

func readJSON(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("values are nested more than %d levels deep", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			var out yaml.MapSlice
			seen := make(map[string]bool)
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, noEOF(err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("want an object key, got %v", kt)
				}
				if seen[k] {
					return nil, fmt.Errorf("key %q is repeated; a key may appear only once in an object", k)
				}
				seen[k] = true
				v, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, noEOF(err)
				}
				out = append(out, yaml.MapItem{Key: k, Value: v})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, noEOF(err)
			}
			if out == nil {
				out = yaml.MapSlice{}
			}
			return out, nil
		case '[':
			out := []any{}
			for dec.More() {
				v, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, noEOF(err)
				}
				out = append(out, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, noEOF(err)
			}
			return out, nil
		default:
			return nil, fmt.Errorf("unexpected %q", rune(tok))
		}
	default:
		return normalizeJSON(tok)
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// normalizeJSON turns a JSON scalar (decoded with UseNumber) into a tree node.
func normalizeJSON(v any) (any, error) {
	n, ok := v.(json.Number)
	if !ok {
		return v, nil
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, nil
	}
	if u, err := strconv.ParseUint(string(n), 10, 64); err == nil {
		return u, nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, fmt.Errorf("invalid number %s", n)
	}
	return f, nil
}

// describe names a tree node's type and, for scalars, its value, for error
// messages: "a number (30)".
func describe(n any) string {
	switch n := n.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a string (%q)", n)
	case bool:
		return fmt.Sprintf("a boolean (%t)", n)
	case int, int64, uint64:
		return fmt.Sprintf("a number (%d)", n)
	case float64:
		f := strconv.FormatFloat(n, 'g', -1, 64)
		if !strings.ContainsAny(f, ".eIN") {
			f += ".0" // show that 1.0 is not the integer 1
		}
		return fmt.Sprintf("a number (%s)", f)
	case []any:
		return "a list"
	case yaml.MapSlice, map[any]any:
		return "a mapping"
	default:
		return fmt.Sprintf("a %T", n)
	}
}

// lookup returns the value of key in mapping m.
func lookup(m yaml.MapSlice, key string) (any, bool) {
	for _, it := range m {
		if it.Key == key {
			return it.Value, true
		}
	}
	return nil, false
}
