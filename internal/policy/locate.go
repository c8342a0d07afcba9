package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
)

// Locator finds the line of a field in a YAML (or JSON) input, so that the
// errors of Decode and Validate, which name a document and a field path,
// can point at a line of the file.
//
// The input is parsed once, by NewLocator; a Locator is read-only after
// that and safe for concurrent use.
//
// +kubebuilder:object:generate=false
type Locator struct {
	// docs holds the root node of each document, by document index - 1;
	// nil for an empty document.
	docs []*yaml3.Node
	// errDoc and errLine locate a JSON syntax error: the document Decode
	// reports it in and its line. For YAML, the parser's messages carry
	// their own line.
	errDoc, errLine int
}

// LineError is one line of an error annotated by a Locator: Err happened
// at Line (1-based) of the input. Its message is "line L: " followed by
// the message of Err.
//
// +kubebuilder:object:generate=false
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns e.Err.
func (e *LineError) Unwrap() error { return e.Err }

// NewLocator parses data, a YAML stream or a stream of JSON objects, read
// as Decode reads it: input whose first non-blank character is "{" is
// JSON, anything else YAML with documents separated by "---". It never
// fails: the documents before a syntax error can be located, the rest
// cannot, and input that cannot be parsed at all gives a Locator that
// finds nothing.
func NewLocator(data []byte) *Locator {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // as parseStream
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return locateJSON(data)
	}
	return locateYAML(data)
}

func locateYAML(data []byte) *Locator {
	l := &Locator{}
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml3.Node
		if err := dec.Decode(&doc); err != nil {
			// io.EOF, or a syntax error that ends the stream, as it ends
			// Decode's.
			return l
		}
		var root *yaml3.Node
		if len(doc.Content) > 0 {
			root = doc.Content[0]
			if root.Kind == yaml3.ScalarNode && root.Tag == "!!null" {
				root = nil // an empty document, or "~", as Decode skips it
			}
		}
		l.docs = append(l.docs, root)
	}
}

// Line returns the 1-based line of the field at path in document doc
// (1-based, empty documents counted, as Decode counts them). path is a
// field path as Decode and Validate write it:
//
//	spec.rules[0].from[1].source.principals[2]
//	metadata.labels["app"]
//	spec.portLevelMtls[8080].mode
//
// The line of a mapping entry is the line of its key. If the field is
// absent, Line returns the line of its deepest ancestor that is present:
// for a missing required field, the line of the key of its parent mapping;
// for an index out of range, the line of the list's key. The empty path is
// the document's top-level mapping. Line returns 0 if the document does not
// exist or cannot be located.
func (l *Locator) Line(doc int, path string) int {
	if l == nil || doc < 1 || doc > len(l.docs) || l.docs[doc-1] == nil {
		return 0
	}
	root := l.docs[doc-1]
	return locate(root, path, root.Line)
}

// locate walks from n along path and returns the line of the last node it
// reaches; line is the line of n as its parent sees it (the line of its
// key, for a mapping value).
func locate(n *yaml3.Node, path string, line int) int {
	for {
		n = deref(n)
		if n == nil {
			return line
		}
		rest := strings.TrimPrefix(path, ".")
		if rest == "" {
			return line
		}
		switch n.Kind {
		case yaml3.MappingNode:
			key, val, after, ok := findEntry(n, rest, 0)
			if !ok {
				return line
			}
			n, path, line = val, after, key.Line
		case yaml3.SequenceNode:
			seg, after, ok := parseBracket(rest)
			if !ok || seg.quoted {
				return line
			}
			i, err := strconv.Atoi(seg.key)
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n, path, line = n.Content[i], after, n.Content[i].Line
		default:
			return line
		}
	}
}

// deref resolves an alias to the node it names.
func deref(n *yaml3.Node) *yaml3.Node {
	for range 4 { // an anchored node is never an alias; bound it anyway
		if n == nil || n.Kind != yaml3.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

// maxMergeDepth bounds the nesting of merge keys ("<<") followed when
// looking up a key.
const maxMergeDepth = 8

// findEntry finds the entry of mapping m that path (without a leading dot)
// starts with, and returns its key and value nodes and the rest of path.
// A path starting with "[" names a key in brackets; otherwise the longest
// key that path starts with, followed by ".", "[" or the end, is taken, so
// that field names containing dots (in "unknown field" errors) are found.
// Keys merged in with "<<" are found too, after the mapping's own.
func findEntry(m *yaml3.Node, path string, depth int) (key, val *yaml3.Node, rest string, ok bool) {
	var match func(k *yaml3.Node) (string, bool)
	if strings.HasPrefix(path, "[") {
		seg, after, ok := parseBracket(path)
		if !ok {
			return nil, nil, "", false
		}
		match = func(k *yaml3.Node) (string, bool) { return after, seg.matches(k) }
	} else {
		match = func(k *yaml3.Node) (string, bool) {
			if !strings.HasPrefix(path, k.Value) {
				return "", false
			}
			after := path[len(k.Value):]
			return after, after == "" || after[0] == '.' || after[0] == '['
		}
	}
	best := -1
	var merges []*yaml3.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml3.ScalarNode {
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, m.Content[i+1])
			continue
		}
		after, ok := match(k)
		if ok && (best < 0 || len(after) < len(rest)) {
			best, rest = i, after
		}
	}
	if best >= 0 {
		return m.Content[best], m.Content[best+1], rest, true
	}
	if depth >= maxMergeDepth {
		return nil, nil, "", false
	}
	for _, v := range merges {
		v = deref(v)
		if v == nil {
			continue
		}
		sources := []*yaml3.Node{v}
		if v.Kind == yaml3.SequenceNode {
			sources = v.Content
		}
		for _, s := range sources {
			if s = deref(s); s != nil && s.Kind == yaml3.MappingNode {
				if key, val, rest, ok := findEntry(s, path, depth+1); ok {
					return key, val, rest, true
				}
			}
		}
	}
	return nil, nil, "", false
}

// bracket is a path segment in brackets: a Go-quoted string key
// (["app"]), or an index or a scalar key as written ([0], [8080], [true]).
type bracket struct {
	key    string
	quoted bool
}

// parseBracket parses the bracket segment path starts with.
func parseBracket(path string) (bracket, string, bool) {
	if !strings.HasPrefix(path, "[") {
		return bracket{}, "", false
	}
	if strings.HasPrefix(path, `["`) {
		q, err := strconv.QuotedPrefix(path[1:])
		if err != nil {
			return bracket{}, "", false
		}
		after, ok := strings.CutPrefix(path[1+len(q):], "]")
		if !ok {
			return bracket{}, "", false
		}
		s, err := strconv.Unquote(q)
		if err != nil {
			return bracket{}, "", false
		}
		return bracket{key: s, quoted: true}, after, true
	}
	end := strings.IndexByte(path, ']')
	if end < 0 {
		return bracket{}, "", false
	}
	return bracket{key: path[1:end]}, path[end+1:], true
}

// matches reports whether the scalar key node k is the key b names. Keys
// are compared loosely, as written and as values: Decode writes the JSON
// key "8080" as ["8080"] and Validate as [8080], and the YAML key 0x50 is
// [80].
func (b bracket) matches(k *yaml3.Node) bool {
	if k.Value == b.key {
		return true
	}
	if b.quoted || k.Style&(yaml3.DoubleQuotedStyle|yaml3.SingleQuotedStyle) != 0 {
		return false
	}
	var v any
	if err := k.Decode(&v); err != nil {
		return false
	}
	return fmt.Sprint(v) == b.key
}

// locateJSON reads a stream of JSON values into nodes with line numbers.
func locateJSON(data []byte) *Locator {
	j := &jsonLocator{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	j.dec.UseNumber()
	l := &Locator{}
	for doc := 1; ; doc++ {
		n, err := j.value(0)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				l.errDoc, l.errLine = doc, j.errLine(err)
			}
			return l
		}
		l.docs = append(l.docs, n)
	}
}

type jsonLocator struct {
	data []byte
	dec  *json.Decoder
	// line and pos cache the line of the offset pos, which only grows.
	line, pos int
	// dupLine is the line of a repeated key, the error readJSON reports.
	dupLine int
}

// lineAt returns the line of the byte at off.
func (j *jsonLocator) lineAt(off int) int {
	if j.line == 0 {
		j.line = 1
	}
	off = min(off, len(j.data))
	if off < j.pos { // not reached: offsets only grow
		return 1 + bytes.Count(j.data[:off], []byte("\n"))
	}
	j.line += bytes.Count(j.data[j.pos:off], []byte("\n"))
	j.pos = off
	return j.line
}

// next returns the line of the next token: past the whitespace and
// separators after the decoder's offset.
func (j *jsonLocator) next() int {
	off := int(j.dec.InputOffset())
	for off < len(j.data) && strings.IndexByte(" \t\r\n,:", j.data[off]) >= 0 {
		off++
	}
	return j.lineAt(off)
}

// errLine returns the line of a parse error.
func (j *jsonLocator) errLine(err error) int {
	var serr *json.SyntaxError
	switch {
	case j.dupLine > 0:
		return j.dupLine
	case errors.As(err, &serr):
		return j.lineAt(int(max(serr.Offset-1, 0)))
	}
	return j.next() // truncated, or nested too deep: where reading stopped
}

func (j *jsonLocator) value(depth int) (*yaml3.Node, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deep")
	}
	line := j.next()
	tok, err := j.dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			n := &yaml3.Node{Kind: yaml3.MappingNode, Tag: "!!map", Line: line}
			seen := make(map[string]bool)
			for j.dec.More() {
				kline := j.next()
				kt, err := j.dec.Token()
				if err != nil {
					return nil, noEOF(err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("want an object key")
				}
				if seen[k] {
					j.dupLine = kline
					return nil, errors.New("repeated key")
				}
				seen[k] = true
				v, err := j.value(depth + 1)
				if err != nil {
					return nil, noEOF(err)
				}
				key := &yaml3.Node{Kind: yaml3.ScalarNode, Tag: "!!str", Value: k, Style: yaml3.DoubleQuotedStyle, Line: kline}
				n.Content = append(n.Content, key, v)
			}
			if _, err := j.dec.Token(); err != nil {
				return nil, noEOF(err)
			}
			return n, nil
		case '[':
			n := &yaml3.Node{Kind: yaml3.SequenceNode, Tag: "!!seq", Line: line}
			for j.dec.More() {
				v, err := j.value(depth + 1)
				if err != nil {
					return nil, noEOF(err)
				}
				n.Content = append(n.Content, v)
			}
			if _, err := j.dec.Token(); err != nil {
				return nil, noEOF(err)
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", rune(tok))
	case string:
		return &yaml3.Node{Kind: yaml3.ScalarNode, Tag: "!!str", Value: tok, Style: yaml3.DoubleQuotedStyle, Line: line}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(tok), ".eE") {
			tag = "!!float"
		}
		return &yaml3.Node{Kind: yaml3.ScalarNode, Tag: tag, Value: string(tok), Line: line}, nil
	case bool:
		return &yaml3.Node{Kind: yaml3.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(tok), Line: line}, nil
	default: // nil
		return &yaml3.Node{Kind: yaml3.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
	}
}

// AnnotateDecode rewrites an error returned by Decode for the input of l:
// each line of err.Error() that names a document and a field, such as
//
//	document 2 (Workload "web"): spec.selectors: want a list, got a string ("unix:uid:1000")
//	document 2 (Workload "web"): unknown field "spec.selectr" (did you mean "selectors"?)
//
// becomes a *LineError with the line of the field (or of its deepest
// ancestor present), whose message is "line 12: " followed by the line.
// Syntax errors that carry a line ("document 3: invalid YAML: line 7: ...")
// get that line. Other lines are kept as they are. The result joins the
// lines with errors.Join; it is nil if err is nil.
func (l *Locator) AnnotateDecode(err error) error {
	if err == nil {
		return nil
	}
	return l.annotate(err, func(s string) int {
		doc, msg, ok := cutDocument(s)
		if !ok {
			return 0
		}
		if l != nil && doc == l.errDoc && strings.HasPrefix(msg, "invalid JSON: ") {
			return l.errLine
		}
		if line, ok := parserLine(msg); ok {
			return line
		}
		path, ok := fieldPath(msg)
		if !ok {
			return 0
		}
		return l.Line(doc, path)
	})
}

// AnnotateValidate rewrites an error returned by Validate for the object
// decoded from document doc of the input of l (Validate's errors do not
// name the document): each line of the form
//
//	Workload "default/web": spec.selectors: at least one selector is required
//
// becomes a *LineError, as in AnnotateDecode. The result is nil if err is
// nil.
func (l *Locator) AnnotateValidate(doc int, err error) error {
	if err == nil {
		return nil
	}
	return l.annotate(err, func(s string) int {
		msg, ok := cutObjectName(s)
		if !ok {
			return 0
		}
		path, ok := fieldPath(msg)
		if !ok {
			return 0
		}
		return l.Line(doc, path)
	})
}

// annotate splits err into lines and gives each the line lineOf returns
// for it, unless that is 0.
func (l *Locator) annotate(err error, lineOf func(string) int) error {
	msg := err.Error()
	if msg == "" {
		return err
	}
	var errs []error
	for s := range strings.SplitSeq(msg, "\n") {
		if s == "" {
			continue
		}
		if line := lineOf(s); line > 0 {
			errs = append(errs, &LineError{Line: line, Err: errors.New(s)})
		} else {
			errs = append(errs, errors.New(s))
		}
	}
	return errors.Join(errs...)
}

// cutDocument parses the "document N" or "document N (Kind "name")"
// prefix and the ": " after it, as Decode writes them.
func cutDocument(s string) (doc int, msg string, ok bool) {
	rest, ok := strings.CutPrefix(s, "document ")
	if !ok {
		return 0, "", false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	doc, err := strconv.Atoi(rest[:i])
	if err != nil {
		return 0, "", false
	}
	rest = rest[i:]
	if r, ok := strings.CutPrefix(rest, " ("); ok {
		r, ok = cutKindAndName(r, false)
		if !ok {
			return 0, "", false
		}
		if rest, ok = strings.CutPrefix(r, ")"); !ok {
			return 0, "", false
		}
	}
	msg, ok = strings.CutPrefix(rest, ": ")
	return doc, msg, ok
}

// cutObjectName parses the `Kind "ns/name": ` or "Kind (no name): " prefix
// Validate writes.
func cutObjectName(s string) (string, bool) {
	rest, ok := cutKindAndName(s, true)
	if !ok {
		return "", false
	}
	return strings.CutPrefix(rest, ": ")
}

// cutKindAndName cuts a kind followed by a space and a quoted name (or
// "(no name)"), or, unless needName, a kind alone.
func cutKindAndName(s string, needName bool) (string, bool) {
	i := 0
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= 'a' && s[i] <= 'z' || s[i] >= '0' && s[i] <= '9') {
		i++
	}
	if i == 0 {
		return "", false
	}
	rest, ok := strings.CutPrefix(s[i:], " ")
	if !ok {
		return s[i:], !needName
	}
	if r, ok := strings.CutPrefix(rest, "(no name)"); ok {
		return r, true
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", false
	}
	return rest[len(q):], true
}

// parserLine returns the line a YAML parser error names: "invalid YAML:
// line 7: ..." and, for repeated keys, "line 5: key ...".
func parserLine(msg string) (int, bool) {
	msg = strings.TrimPrefix(msg, "invalid YAML: ")
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// fieldPath returns the field path a message of Decode or Validate (after
// the document or object name) is about.
func fieldPath(msg string) (string, bool) {
	if rest, ok := strings.CutPrefix(msg, "unknown field "); ok {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return "", false
		}
		p, err := strconv.Unquote(q)
		return p, err == nil
	}
	if strings.HasPrefix(msg, "want an object ") {
		return "", true // the document itself
	}
	for _, field := range []string{"apiVersion", "kind"} {
		if rest, ok := strings.CutPrefix(msg, field); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, ":")) {
			return field, true
		}
	}
	if strings.HasPrefix(msg, "unknown kind ") {
		return "kind", true
	}
	n := scanPath(msg)
	if n == 0 || !strings.HasPrefix(msg[n:], ": ") {
		return "", false
	}
	return msg[:n], true
}

// scanPath returns the length of the field path msg starts with: a field
// name, then field names after dots and keys or indexes in brackets.
func scanPath(msg string) int {
	isName := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	i := 0
	for i < len(msg) && isName(msg[i]) {
		i++
	}
	if i == 0 {
		return 0
	}
	for i < len(msg) {
		switch msg[i] {
		case '.':
			j := i + 1
			for j < len(msg) && isName(msg[j]) {
				j++
			}
			if j == i+1 {
				return i
			}
			i = j
		case '[':
			_, after, ok := parseBracket(msg[i:])
			if !ok {
				return i
			}
			i = len(msg) - len(after)
		default:
			return i
		}
	}
	return i
}
