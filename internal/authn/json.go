package authn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of token headers, payloads and JWKS.
const maxJSONDepth = 32

// decodeObject decodes data, which must be exactly one JSON object, into a
// map with numbers kept as json.Number. It is stricter than encoding/json
// so that every later reader of the same bytes (the app behind the proxy,
// another JSON library) sees what we saw: no duplicate member names at any
// depth, valid UTF-8 only, no lone surrogates (encoding/json would turn
// both into U+FFFD silently, so a string holding U+FFFD is refused), at
// most maxJSONDepth levels of nesting, nothing after the object.
func decodeObject(data []byte) (map[string]any, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("json is not valid utf-8")
	}
	if err := checkJSON(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	if m == nil {
		return nil, errors.New("json is not an object")
	}
	return m, nil
}

// checkJSON walks data token by token and enforces the rules of
// decodeObject except the final decode.
func checkJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []jsonFrame
	first := true
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			if first {
				return errors.New("json is empty")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("json: %w", err)
		}
		if first {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errors.New("json is not an object")
			}
			first = false
		} else if len(stack) == 0 {
			return errors.New("json has data after the object")
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectName {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				markValueDone(stack)
				continue
			}
			name, ok := tok.(string)
			if !ok {
				return errors.New("json: member name is not a string")
			}
			if strings.ContainsRune(name, utf8.RuneError) {
				return errors.New("json has invalid utf-8 or a lone surrogate")
			}
			if _, dup := stack[n-1].names[name]; dup {
				return errors.New("json has a duplicate member name")
			}
			stack[n-1].names[name] = struct{}{}
			stack[n-1].expectName = false
			continue
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, jsonFrame{names: map[string]struct{}{}, object: true, expectName: true})
			case '[':
				stack = append(stack, jsonFrame{})
			case ']':
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			case '}':
				// Only reachable after a value, never after a name: the
				// decoder rejects "{"a"}".
				stack = stack[:len(stack)-1]
				markValueDone(stack)
			}
			if len(stack) > maxJSONDepth {
				return fmt.Errorf("json is nested more than %d levels", maxJSONDepth)
			}
		case string:
			if strings.ContainsRune(v, utf8.RuneError) {
				return errors.New("json has invalid utf-8 or a lone surrogate")
			}
			markValueDone(stack)
		default:
			markValueDone(stack)
		}
	}
}

// jsonFrame is one open container in checkJSON: for an object, the member
// names seen so far and whether the next token is a name.
type jsonFrame struct {
	names      map[string]struct{}
	object     bool
	expectName bool
}

// markValueDone notes that a complete value was read in the innermost
// container: in an object, the next token is a name again.
func markValueDone(stack []jsonFrame) {
	if n := len(stack); n > 0 && stack[n-1].object {
		stack[n-1].expectName = true
	}
}
