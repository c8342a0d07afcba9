package istio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	yaml "go.yaml.in/yaml/v3"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// Group is the API group of Istio's security policies.
const Group = "security.istio.io"

// DefaultRootNamespace is Istio's default root namespace, the default of
// Options.RootNamespace.
const DefaultRootNamespace = "istio-system"

// DefaultTrustDomain is Istio's default trust domain, the default of
// Options.TrustDomain.
const DefaultTrustDomain = "cluster.local"

// versions are the versions of Group that Convert reads.
var versions = []string{"v1", "v1beta1"}

// kinds are the kinds Convert reads; trustmesh has kinds of the same names.
var kinds = []string{policy.KindAuthorizationPolicy, policy.KindPeerAuthentication, policy.KindRequestAuthentication}

// kindsOr and kindsAnd list kinds for messages.
const (
	kindsOr  = "AuthorizationPolicy, PeerAuthentication or RequestAuthentication"
	kindsAnd = "AuthorizationPolicy, PeerAuthentication and RequestAuthentication"
)

// serverFields are the metadata fields the Kubernetes API server writes.
var serverFields = []string{
	"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
	"ownerReferences", "finalizers", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
}

const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// Options configures Convert.
type Options struct {
	// RootNamespace is the Istio root namespace of the input (default
	// "istio-system"); policies in it are moved to policy.RootNamespace
	// ("trustmesh-system") so that they stay mesh-wide.
	RootNamespace string
	// TrustDomain is the trust domain the converted objects are validated
	// for (default "cluster.local", Istio's default), and the one of the
	// principals suggested in place of Istio's serviceAccounts.
	TrustDomain spiffeid.TrustDomain
	// SkipOtherKinds makes Convert skip the objects that are not of
	// Group, such as a Deployment in the same file, instead of reporting
	// them as errors.
	SkipOtherKinds bool
}

// Convert reads a YAML stream (documents separated by "---", or a stream
// of JSON objects) of Istio objects and returns the trustmesh objects they
// convert to, in input order, validated for opts.TrustDomain. Empty
// documents are skipped; a kubectl List is read as its items.
//
// Every Istio field trustmesh does not support is an error naming the
// document, the object and the field and saying what to do:
//
//   - spec.targetRef and spec.targetRefs of AuthorizationPolicy and
//     RequestAuthentication: trustmesh selects workloads with
//     spec.selector.matchLabels.
//   - serviceAccounts and notServiceAccounts of an AuthorizationPolicy
//     source: write principals (the error suggests them).
//   - action CUSTOM without spec.provider.rego: trustmesh evaluates CUSTOM
//     policies with inline Rego, not with an extension provider.
//   - fromCookies, timeout and spaceDelimitedClaims of a RequestAuthentication
//     JWT rule.
//   - A PeerAuthentication with a selector in the root namespace: Istio
//     ignores it, trustmesh rejects it.
//
// So are objects of other kinds of Group, other versions (such as
// v1alpha1), and, unless opts.SkipOtherKinds, objects of other groups;
// then the errors of policy.Decode (unknown fields, wrong types) and
// policy.Validate. All problems are reported together, joined with
// errors.Join, one per line; a syntax error ends the input.
func Convert(data []byte, opts Options) ([]policy.Object, error) {
	if opts.RootNamespace == "" {
		opts.RootNamespace = DefaultRootNamespace
	}
	if opts.TrustDomain.IsZero() {
		opts.TrustDomain = spiffeid.RequireTrustDomainFromString(DefaultTrustDomain)
	}
	c := &converter{opts: opts, budget: maxNodes + len(data)}
	docs, perr := parse(data)
	for _, d := range docs {
		if d.root != nil && !c.stopped {
			c.document(d.index, d.root)
		}
	}
	if perr != nil {
		c.errs = append(c.errs, perr)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	if len(c.objs) == 0 {
		return nil, fmt.Errorf("no Istio security policies found: want %s objects of %s/v1 or %s/v1beta1", kindsOr, Group, Group)
	}
	return c.objs, nil
}

// maxNodes bounds, with the length of the input, the number of nodes
// Convert copies: without aliases a node takes at least a byte of input,
// with them a small input can expand to a huge tree.
const maxNodes = 10000

// document is one document of the input stream.
type document struct {
	// index counts documents from 1, empty ones included.
	index int
	// root is nil for an empty document.
	root *yaml.Node
}

// parse splits data into documents as policy.Decode does: input whose
// first non-blank character is "{" is a stream of JSON objects, anything
// else YAML. A syntax error ends the stream; the documents before it are
// returned with the error.
func parse(data []byte) ([]document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseJSON(t)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []document
	for i := 1; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, fmt.Errorf("document %d: invalid YAML: %s", i, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		var root *yaml.Node
		if len(n.Content) > 0 && !isNull(n.Content[0]) {
			root = n.Content[0]
		}
		docs = append(docs, document{index: i, root: root})
	}
}

// maxJSONDepth bounds the nesting of JSON input, as policy.Decode does.
const maxJSONDepth = 100

// parseJSON reads a stream of JSON values into trees. It reads JSON
// itself rather than as YAML flow syntax, which differs in details (YAML
// has no \/ escape).
func parseJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []document
	for i := 1; ; i++ {
		n, err := jsonValue(dec, 0)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, fmt.Errorf("document %d: invalid JSON: %w", i, err)
		}
		docs = append(docs, document{index: i, root: n})
	}
}

func jsonValue(dec *json.Decoder, depth int) (*yaml.Node, error) {
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
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
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
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, noEOF(err)
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k, Style: yaml.DoubleQuotedStyle}, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, noEOF(err)
			}
			return n, nil
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, noEOF(err)
				}
				n.Content = append(n.Content, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, noEOF(err)
			}
			return n, nil
		}
		return nil, fmt.Errorf("unexpected %q", rune(tok))
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: tok, Style: yaml.DoubleQuotedStyle}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(tok), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(tok)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(tok)}, nil
	default: // nil
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// converter holds the state of one Convert call.
type converter struct {
	opts Options
	objs []policy.Object
	errs []error
	// budget is the number of nodes that may still be copied; stopped is
	// set when it is exhausted.
	budget  int
	stopped bool
}

// document converts the objects of one document.
func (c *converter) document(index int, root *yaml.Node) {
	root = deref(root)
	if root.Kind == yaml.MappingNode {
		apiVersion, _ := str(get(root, "apiVersion"))
		kind, _ := str(get(root, "kind"))
		if apiVersion == "v1" && kind == "List" {
			c.list(index, root)
			return
		}
	}
	c.object(index, "", root)
}

// list converts the items of a kubectl List.
func (c *converter) list(index int, root *yaml.Node) {
	items := deref(get(root, "items"))
	switch {
	case items == nil || isNull(items):
		return
	case items.Kind != yaml.SequenceNode:
		c.errs = append(c.errs, fmt.Errorf("document %d (List): items: want a list, got %s", index, describe(items)))
		return
	}
	for i, it := range items.Content {
		if c.stopped {
			return
		}
		c.object(index, fmt.Sprintf("items[%d]", i), deref(it))
	}
}

// object is one object being converted.
type object struct {
	c *converter
	// doc is the index of the document; prefix the field path of the
	// object in it ("" or, in a List, "items[N]").
	doc    int
	prefix string
	// kind and label name the object in errors: label is "" or
	// ` (Kind "namespace/name")`, as written in the input.
	kind, label string
	// inRoot is set if the object is in Istio's root namespace.
	inRoot bool
	// fields are the paths (without prefix) of the problems reported, so
	// that Validate's report of the same problem is left out.
	fields []string
	failed bool
}

// fail reports a problem with the field at path ("" for the object).
func (o *object) fail(path, format string, args ...any) {
	o.fields = append(o.fields, path)
	msg := fmt.Sprintf(format, args...)
	if p := joinPath(o.prefix, path); p != "" {
		msg = p + ": " + msg
	}
	o.add(msg)
}

// add reports a message that starts with the path of the field it is
// about or with `unknown field "PATH"`, as those of policy.Decode and
// policy.Validate do after the object's name, with the path relative to
// the object.
func (o *object) add(msg string) {
	o.failed = true
	o.c.errs = append(o.c.errs, fmt.Errorf("document %d%s: %s", o.doc, o.label, msg))
}

// addRelative reports a message of policy.Decode or policy.Validate,
// after the object's name.
func (o *object) addRelative(msg string) {
	if o.prefix != "" {
		if rest, ok := strings.CutPrefix(msg, `unknown field "`); ok {
			msg = `unknown field "` + o.prefix + "." + rest
		} else if !strings.HasPrefix(msg, "invalid YAML") {
			msg = o.prefix + "." + msg
		}
	}
	o.add(msg)
}

// joinPath appends path to prefix.
func joinPath(prefix, path string) string {
	switch {
	case prefix == "":
		return path
	case path == "":
		return prefix
	case path[0] == '[':
		return prefix + path
	}
	return prefix + "." + path
}

// object converts one object: n is the root of a document or an item of
// a List at prefix.
func (c *converter) object(index int, prefix string, n *yaml.Node) {
	o := &object{c: c, doc: index, prefix: prefix}
	if n == nil || n.Kind != yaml.MappingNode {
		o.fail("", "want an object (a mapping with apiVersion, kind, metadata and spec), got %s", describe(n))
		return
	}
	apiNode, kindNode := get(n, "apiVersion"), get(n, "kind")
	apiVersion, apiOK := str(apiNode)
	kind, kindOK := str(kindNode)
	group, version, _ := strings.Cut(apiVersion, "/")
	security := apiOK && group == Group
	meta := deref(get(n, "metadata"))
	name, _ := str(get(meta, "name"))
	ns, _ := str(get(meta, "namespace"))
	o.inRoot = ns == c.opts.RootNamespace
	if security && ns == "" {
		ns = policy.DefaultNamespace
	}
	if kindOK && kind != "" {
		o.kind = kind
		switch {
		case name == "":
			o.label = fmt.Sprintf(" (%s)", kind)
		case ns == "":
			o.label = fmt.Sprintf(" (%s %q)", kind, name)
		default:
			o.label = fmt.Sprintf(" (%s %q)", kind, ns+"/"+name)
		}
	}

	switch {
	case apiNode == nil || isNull(apiNode):
		o.fail("apiVersion", "is missing: want %s/v1", Group)
		return
	case !apiOK:
		o.fail("apiVersion", "want a string such as %q, got %s", Group+"/v1", describe(apiNode))
		return
	case !security && c.opts.SkipOtherKinds:
		return
	case !security:
		what := apiVersion
		if kindOK && kind != "" {
			what += " " + kind
		}
		o.fail("kind", "%s is not an Istio security policy (%s of %s): remove it from the input, or skip objects of other kinds", what, kindsOr, Group)
		return
	case kindNode == nil || isNull(kindNode):
		o.fail("kind", "is missing: want %s", kindsOr)
		return
	case !kindOK:
		o.fail("kind", "want a string, %s; got %s", kindsOr, describe(kindNode))
		return
	case !slices.Contains(kinds, kind):
		o.fail("kind", "%q of %s is not supported: trustmesh imports %s", kind, Group, kindsAnd)
		return
	case !slices.Contains(versions, version):
		o.fail("apiVersion", "%q is not supported: want %s/v1 or %s/v1beta1", apiVersion, Group, Group)
		return
	}
	o.convert(n)
}

// convert rewrites the object and decodes and validates the result.
func (o *object) convert(n *yaml.Node) {
	out := o.copyTree(n, "")
	if out == nil {
		o.fail("", "YAML aliases expand the input to too many nodes: write the object out without aliases (the rest of the input is not read)")
		o.c.stopped = true
		return
	}
	for i := 0; i+1 < len(out.Content); {
		if k := out.Content[i]; k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			o.fail("", "field names must be strings, got %s", describe(k))
			out.Content = slices.Delete(out.Content, i, i+2)
			continue
		}
		i += 2
	}
	set(out, "apiVersion", policy.APIVersion)
	del(out, "status")
	meta := get(out, "metadata")
	if meta == nil || isNull(meta) {
		meta = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		setNode(out, "metadata", meta)
	}
	if meta.Kind == yaml.MappingNode {
		o.metadata(meta)
	}
	if spec := get(out, "spec"); spec != nil && spec.Kind == yaml.MappingNode {
		switch o.kind {
		case policy.KindAuthorizationPolicy:
			o.authorizationPolicy(spec)
		case policy.KindPeerAuthentication:
			o.peerAuthentication(spec)
		case policy.KindRequestAuthentication:
			o.requestAuthentication(spec)
		}
	}
	o.decode(out)
}

// metadata rewrites the namespace and the annotations and drops the
// fields the API server writes.
func (o *object) metadata(meta *yaml.Node) {
	for _, f := range serverFields {
		del(meta, f)
	}
	root := o.c.opts.RootNamespace
	nsNode := get(meta, "namespace")
	ns, isString := str(nsNode)
	switch {
	case nsNode == nil || isNull(nsNode) || isString && ns == "":
		set(meta, "namespace", policy.DefaultNamespace)
	case !isString:
		// policy.Decode reports it.
	case ns == root:
		set(meta, "namespace", policy.RootNamespace)
	case ns == policy.RootNamespace:
		o.fail("metadata.namespace", "%s is trustmesh's root namespace, where policies apply to the whole mesh, but in Istio (root namespace %s) this one applies to its namespace only: move it to another namespace", ns, root)
	}

	ann := get(meta, "annotations")
	if ann == nil || ann.Kind != yaml.MappingNode {
		return
	}
	del(ann, lastAppliedAnnotation)
	istioDryRun := get(ann, policy.IstioAnnotationDryRun)
	if istioDryRun == nil {
		return
	}
	if dryRun := get(ann, policy.AnnotationDryRun); dryRun != nil {
		if dryRun.Kind != yaml.ScalarNode || istioDryRun.Kind != yaml.ScalarNode || dryRun.Value != istioDryRun.Value {
			o.fail(fmt.Sprintf("metadata.annotations[%q]", policy.IstioAnnotationDryRun), "conflicts with the annotation %s: keep one of them", policy.AnnotationDryRun)
		}
		del(ann, policy.IstioAnnotationDryRun)
		return
	}
	rename(ann, policy.IstioAnnotationDryRun, policy.AnnotationDryRun)
}

// targetRefs rejects the targetRef and targetRefs fields of spec.
func (o *object) targetRefs(spec *yaml.Node) {
	for _, f := range []string{"targetRef", "targetRefs"} {
		if get(spec, f) != nil {
			o.fail("spec."+f, "not supported: trustmesh selects workloads with selector.matchLabels; replace %s with a selector for the labels of the workloads the policy is for", f)
			del(spec, f)
		}
	}
}

func (o *object) authorizationPolicy(spec *yaml.Node) {
	o.targetRefs(spec)
	for i, rule := range items(get(spec, "rules")) {
		for j, from := range items(get(rule, "from")) {
			src := get(from, "source")
			if src == nil || src.Kind != yaml.MappingNode {
				continue
			}
			for _, f := range []struct{ istio, trustmesh string }{
				{"serviceAccounts", "principals"},
				{"notServiceAccounts", "notPrincipals"},
			} {
				v := get(src, f.istio)
				if v == nil {
					continue
				}
				path := fmt.Sprintf("spec.rules[%d].from[%d].source.%s", i, j, f.istio)
				if p := o.principals(v); p != "" {
					o.fail(path, "not supported: write the identities as %s: %s", f.trustmesh, p)
				} else {
					o.fail(path, "not supported: write the identities as %s, such as %s/ns/NAMESPACE/sa/NAME", f.trustmesh, o.c.opts.TrustDomain.Name())
				}
				del(src, f.istio)
			}
		}
	}
	action, _ := str(get(spec, "action"))
	if action != string(policy.ActionCustom) {
		return
	}
	provider := get(spec, "provider")
	if rego, _ := str(get(provider, "rego")); strings.TrimSpace(rego) != "" {
		return
	}
	if name, _ := str(get(provider, "name")); name != "" {
		o.fail("spec.provider.rego", "trustmesh evaluates CUSTOM policies with inline Rego, not with an extension provider (%q): add spec.provider.rego, a Rego module that defines allow", name)
		return
	}
	o.fail("spec.provider.rego", "trustmesh evaluates CUSTOM policies with inline Rego: add spec.provider.rego, a Rego module that defines allow")
}

// principals returns, for a list of Istio service accounts
// ("NAMESPACE/NAME"), the list of principals that names them, in YAML flow
// syntax, or "" if the list is not of that form.
func (o *object) principals(accounts *yaml.Node) string {
	var ps []string
	for _, a := range items(accounts) {
		s, ok := str(a)
		ns, sa, found := strings.Cut(s, "/")
		if !ok || !found || ns == "" || sa == "" || strings.ContainsAny(sa, "/*") || strings.Contains(ns, "*") {
			return ""
		}
		ps = append(ps, strconv.Quote(fmt.Sprintf("%s/ns/%s/sa/%s", o.c.opts.TrustDomain.Name(), ns, sa)))
	}
	if len(ps) == 0 {
		return ""
	}
	return "[" + strings.Join(ps, ", ") + "]"
}

func (o *object) peerAuthentication(spec *yaml.Node) {
	if sel := get(spec, "selector"); sel != nil && !isNull(sel) && o.inRoot {
		o.fail("spec.selector", "Istio ignores a PeerAuthentication with a selector in its root namespace %s, and trustmesh rejects it: leave out the selector for a mesh-wide policy, or move the policy to the namespace of the workloads it selects", o.c.opts.RootNamespace)
	}
}

func (o *object) requestAuthentication(spec *yaml.Node) {
	o.targetRefs(spec)
	for i, rule := range items(get(spec, "jwtRules")) {
		if rule.Kind != yaml.MappingNode {
			continue
		}
		path := fmt.Sprintf("spec.jwtRules[%d]", i)
		if get(rule, "jwks_uri") != nil {
			if get(rule, "jwksUri") != nil {
				o.fail(path+".jwks_uri", "is Istio's other spelling of jwksUri, which is set too: keep only jwksUri")
				del(rule, "jwks_uri")
			} else {
				rename(rule, "jwks_uri", "jwksUri")
			}
		}
		for _, f := range []struct{ name, why string }{
			{"fromCookies", "trustmesh reads tokens only from headers (fromHeaders) and query parameters (fromParams): send the token in a header, and remove fromCookies"},
			{"timeout", "trustmesh fetches JWKS with its own timeout: remove it"},
			{"spaceDelimitedClaims", "trustmesh matches claims as the token carries them: remove it, and match the claim's whole value"},
		} {
			if get(rule, f.name) != nil {
				o.fail(path+"."+f.name, "not supported: %s", f.why)
				del(rule, f.name)
			}
		}
	}
}

// decode passes the converted tree through policy.Decode and
// policy.Validate and keeps the object if it has no problems.
func (o *object) decode(out *yaml.Node) {
	data, err := yaml.Marshal(out)
	if err != nil {
		o.fail("", "cannot encode the converted object: %v", err)
		return
	}
	objs, err := policy.Decode(data)
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
			o.addRelative(cutDocument(line))
		}
		return
	}
	if len(objs) != 1 {
		o.fail("", "converted to %d objects, want 1", len(objs)) // not reached
		return
	}
	obj := objs[0]
	if err := policy.Validate(obj, o.c.opts.TrustDomain); err != nil {
		prefix := validatePrefix(obj)
		for line := range strings.SplitSeq(err.Error(), "\n") {
			msg, _ := strings.CutPrefix(line, prefix)
			if !o.reported(msg) {
				o.addRelative(msg)
			}
		}
		return
	}
	if !o.failed {
		o.c.objs = append(o.c.objs, obj)
	}
}

// reported reports whether msg, a message of policy.Validate, is about a
// field o has reported a problem with, or says that the parent of such a
// field, which o removed, is empty.
func (o *object) reported(msg string) bool {
	for _, f := range o.fields {
		if f == "" {
			continue
		}
		if strings.HasPrefix(msg, f+": ") {
			return true
		}
		if parent, _, ok := strings.Cut(msg, ": is empty"); ok && (strings.HasPrefix(f, parent+".") || strings.HasPrefix(f, parent+"[")) {
			return true
		}
	}
	return false
}

// cutDocument cuts the "document 1" prefix, with the object's kind and
// name in parentheses if any, and the ": " after it from a line of an
// error of policy.Decode.
func cutDocument(line string) string {
	rest, ok := strings.CutPrefix(line, "document 1")
	if !ok {
		return line
	}
	if r, ok := strings.CutPrefix(rest, " ("); ok {
		i := strings.IndexAny(r, " )")
		if i < 0 {
			return line
		}
		r = r[i:]
		if q, ok := strings.CutPrefix(r, " "); ok {
			name, err := strconv.QuotedPrefix(q)
			if err != nil {
				return line
			}
			r = q[len(name):]
		}
		if rest, ok = strings.CutPrefix(r, ")"); !ok {
			return line
		}
	}
	if msg, ok := strings.CutPrefix(rest, ": "); ok {
		return msg
	}
	return line
}

// validatePrefix is how policy.Validate names obj at the start of each
// line.
func validatePrefix(obj policy.Object) string {
	m := obj.GetMeta()
	if m.Name == "" {
		return obj.GetKind() + " (no name): "
	}
	return fmt.Sprintf("%s %q: ", obj.GetKind(), m.Namespace+"/"+m.Name)
}

// copyTree returns a deep copy of n without comments, anchors and
// aliases (an alias is replaced by a copy of the node it names) and
// with merge keys ("<<") resolved. Repeated keys are reported and left
// out. It returns nil when the copy would exceed the node budget.
func (o *object) copyTree(n *yaml.Node, path string) *yaml.Node {
	n = deref(n)
	if o.c.budget--; o.c.budget < 0 {
		return nil
	}
	if n == nil { // an alias to nothing, which the parser does not produce
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	out := &yaml.Node{Kind: n.Kind, Tag: n.Tag, Value: n.Value, Style: n.Style}
	switch n.Kind {
	case yaml.SequenceNode:
		out.Content = make([]*yaml.Node, 0, len(n.Content))
		for i, e := range n.Content {
			c := o.copyTree(e, fmt.Sprintf("%s[%d]", path, i))
			if c == nil {
				return nil
			}
			out.Content = append(out.Content, c)
		}
	case yaml.MappingNode:
		seen := make(map[string]bool)
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := deref(n.Content[i]), n.Content[i+1]
			if k == nil || k.Kind != yaml.ScalarNode {
				o.fail(path, "mapping keys must be strings, got %s", describe(k))
				continue
			}
			if k.Tag == "!!merge" {
				merges = append(merges, v)
				continue
			}
			kpath := keyPath(path, k)
			id := k.Tag + "\x00" + k.Value
			if seen[id] {
				o.repeated(kpath, k)
				continue
			}
			seen[id] = true
			ck, cv := o.copyTree(k, kpath), o.copyTree(v, kpath)
			if ck == nil || cv == nil {
				return nil
			}
			out.Content = append(out.Content, ck, cv)
		}
		// Merged keys, after the mapping's own, which take precedence; of
		// several merged mappings, the first that has a key wins.
		for _, m := range merges {
			sources := []*yaml.Node{m}
			if d := deref(m); d != nil && d.Kind == yaml.SequenceNode {
				sources = d.Content
			}
			for _, s := range sources {
				if d := deref(s); d == nil || d.Kind != yaml.MappingNode {
					o.fail(path, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(d))
					continue
				}
				c := o.copyTree(s, path)
				if c == nil {
					return nil
				}
				for i := 0; i+1 < len(c.Content); i += 2 {
					k := c.Content[i]
					if id := k.Tag + "\x00" + k.Value; !seen[id] {
						seen[id] = true
						out.Content = append(out.Content, k, c.Content[i+1])
					}
				}
			}
		}
	}
	return out
}

// repeated reports the repeated key k at path. The message names the
// line of k, in the form of policy.Decode's message for a repeated key in
// YAML input, which policy.Locator reads.
func (o *object) repeated(path string, k *yaml.Node) {
	if k.Line == 0 { // not reached: keys of JSON input are checked when parsed
		o.fail(path, "the key %q is repeated; a key may appear only once in a mapping", k.Value)
		return
	}
	o.fields = append(o.fields, path)
	o.add(fmt.Sprintf("line %d: key %q is repeated; a key may appear only once in a mapping", k.Line, k.Value))
}

// keyPath is the path of the value of key k in the mapping at path.
func keyPath(path string, k *yaml.Node) string {
	switch {
	case k.Tag != "!!str":
		return fmt.Sprintf("%s[%s]", path, k.Value)
	case isFieldName(k.Value):
		return joinPath(path, k.Value)
	}
	return fmt.Sprintf("%s[%q]", path, k.Value)
}

func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// deref resolves an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for range 4 { // an anchored node is never an alias; bound it anyway
		if n == nil || n.Kind != yaml.AliasNode {
			return n
		}
		n = n.Alias
	}
	return nil
}

func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// get returns the value of the string key in mapping m, or nil.
func get(m *yaml.Node, key string) *yaml.Node {
	if m = deref(m); m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Tag == "!!str" && k.Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

// str returns the value of a string scalar.
func str(n *yaml.Node) (string, bool) {
	if n = deref(n); n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", false
	}
	return n.Value, true
}

// items returns the elements of a list, or nil if n is not a list.
func items(n *yaml.Node) []*yaml.Node {
	if n = deref(n); n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, e := range n.Content {
		out[i] = deref(e)
	}
	return out
}

// set sets the string key of mapping m to the string value.
func set(m *yaml.Node, key, value string) {
	setNode(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
}

func setNode(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Tag == "!!str" && k.Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// del removes the string key from mapping m.
func del(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Tag == "!!str" && k.Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

// rename renames the string key of mapping m.
func rename(m *yaml.Node, from, to string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Tag == "!!str" && k.Value == from {
			m.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: to}
			return
		}
	}
}

// describe names a node's type and, for scalars, its value, as
// policy.Decode does in errors.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "null"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("a string (%q)", n.Value)
	case "!!bool":
		return fmt.Sprintf("a boolean (%s)", n.Value)
	case "!!int", "!!float":
		return fmt.Sprintf("a number (%s)", n.Value)
	}
	return fmt.Sprintf("a %s (%q)", strings.TrimPrefix(n.Tag, "!!"), n.Value)
}
