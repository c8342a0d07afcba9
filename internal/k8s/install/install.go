// Package install produces trustmesh's Kubernetes manifests for a namespace
// and trust domain, from the committed deploy/manifests/trustmesh.yaml (the
// Helm chart deploy/helm/trustmesh rendered with its default values).
//
// The namespace and the trust domain are replaced only where the chart puts
// them: each place is found by its position in the object (metadata.namespace,
// a binding's subjects, a webhook's Service, the injector's namespace
// selector, the value after a known flag in a container's args), checked to
// hold exactly the default the chart renders, and rewritten in the text in
// place. Nothing else changes: not the formatting, not a CRD's description
// that happens to contain the same words. No other string or comment of the
// objects (CRDs aside) may hold a default, so a template change that puts the
// namespace somewhere new fails here instead of printing half-moved
// manifests. The result equals what `helm template` renders for the same
// values (tested).
package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/trustmesh/trustmesh/deploy/manifests"
)

// The values deploy/manifests/trustmesh.yaml is rendered with.
const (
	DefaultNamespace   = "trustmesh-system"
	DefaultTrustDomain = "cluster.local"
)

// Config says what the manifests are for.
type Config struct {
	// Namespace is where the server and the agents run: a DNS label.
	// Default DefaultNamespace.
	Namespace string
	// TrustDomain is the mesh's SPIFFE trust domain. Default
	// DefaultTrustDomain.
	TrustDomain spiffeid.TrustDomain
}

// dnsLabel is a Kubernetes namespace name (RFC 1123 label).
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateNamespace reports whether ns can name a namespace.
func ValidateNamespace(ns string) error {
	if len(ns) > 63 || !dnsLabel.MatchString(ns) {
		return fmt.Errorf("namespace %q: want a DNS label (at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit)", ns)
	}
	return nil
}

// Manifests returns the manifests for cfg as a stream of YAML documents.
// With the defaults it is deploy/manifests/trustmesh.yaml itself.
func Manifests(cfg Config) ([]byte, error) {
	ns, td := cfg.Namespace, cfg.TrustDomain.Name()
	if ns == "" {
		ns = DefaultNamespace
	}
	if td == "" {
		td = DefaultTrustDomain
	}
	if err := ValidateNamespace(ns); err != nil {
		return nil, err
	}
	return rewrite([]byte(manifests.YAML), values{namespace: ns, trustDomain: td})
}

// values are what a site is rendered from.
type values struct{ namespace, trustDomain string }

var defaults = values{namespace: DefaultNamespace, trustDomain: DefaultTrustDomain}

// A site is one scalar of the manifests that the chart renders from the
// values; render gives its text for v.
type site struct {
	node   *yaml.Node
	what   string // for errors: where in which object
	render func(v values) string
}

// flagSites are the container flags whose value the chart renders from the
// values, keyed by flag.
var flagSites = map[string]func(v values) string{
	"--trust-domain":              func(v values) string { return v.trustDomain },
	"--server":                    func(v values) string { return "trustmesh-server." + v.namespace + ".svc:8443" },
	"--k8s-agent-service-account": func(v values) string { return v.namespace + ":trustmesh-agent" },
}

// rewrite replaces every site of src rendered from the defaults with its
// rendering from v.
func rewrite(src []byte, v values) ([]byte, error) {
	docs, err := decode(src)
	if err != nil {
		return nil, err
	}
	var sites []site
	for _, d := range docs {
		s, err := docSites(d)
		if err != nil {
			return nil, err
		}
		sites = append(sites, s...)
	}
	if err := checkSitesComplete(docs, sites); err != nil {
		return nil, err
	}
	lines := lineOffsets(src)
	type edit struct {
		start, end int
		text       string
	}
	edits := make([]edit, 0, len(sites))
	for _, s := range sites {
		old, repl := s.render(defaults), s.render(v)
		if s.node.Value != old {
			return nil, fmt.Errorf("manifests: %s is %q, want %q: the chart changed; update package install", s.what, s.node.Value, old)
		}
		if s.node.Style != yaml.DoubleQuotedStyle {
			return nil, fmt.Errorf("manifests: %s is not double-quoted: the chart must quote what it renders from the values", s.what)
		}
		start, err := offset(src, lines, s.node.Line, s.node.Column)
		if err != nil {
			return nil, fmt.Errorf("manifests: %s: %w", s.what, err)
		}
		quoted := `"` + old + `"`
		if !bytes.HasPrefix(src[start:], []byte(quoted)) {
			return nil, fmt.Errorf("manifests: %s: text at line %d is not %s", s.what, s.node.Line, quoted)
		}
		if strings.ContainsAny(repl, "\"\\\n") {
			return nil, fmt.Errorf("manifests: %s: %q cannot be written in double quotes without escapes", s.what, repl)
		}
		edits = append(edits, edit{start: start, end: start + len(quoted), text: `"` + repl + `"`})
	}
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	var out bytes.Buffer
	out.Grow(len(src) + 64*len(edits))
	prev := 0
	for _, e := range edits {
		if e.start < prev {
			return nil, errors.New("manifests: two sites overlap")
		}
		out.Write(src[prev:e.start])
		out.WriteString(e.text)
		prev = e.end
	}
	out.Write(src[prev:])
	return out.Bytes(), nil
}

// decode parses the stream into its documents, leaving out empty ones.
func decode(src []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("manifests: %w", err)
		}
		if len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode {
			docs = append(docs, n.Content[0])
		} else if len(n.Content) != 1 || n.Content[0].Tag != "!!null" {
			return nil, fmt.Errorf("manifests: line %d: a document that is not an object", n.Line)
		}
	}
}

// docSites lists the sites of one object.
func docSites(obj *yaml.Node) ([]site, error) {
	kind := scalar(get(obj, "kind"))
	name := scalar(get(obj, "metadata", "name"))
	if kind == "" || name == "" {
		return nil, fmt.Errorf("manifests: line %d: an object without kind or metadata.name", obj.Line)
	}
	id := kind + " " + name
	ns := func(n *yaml.Node, path string) site {
		return site{node: n, what: id + " " + path, render: func(v values) string { return v.namespace }}
	}
	var sites []site
	if n := get(obj, "metadata", "namespace"); n != nil {
		sites = append(sites, ns(n, "metadata.namespace"))
	}
	switch kind {
	case "Namespace":
		sites = append(sites, ns(get(obj, "metadata", "name"), "metadata.name"))
	case "ClusterRoleBinding", "RoleBinding":
		for i, s := range items(get(obj, "subjects")) {
			if n := get(s, "namespace"); n != nil {
				sites = append(sites, ns(n, fmt.Sprintf("subjects[%d].namespace", i)))
			}
		}
	case "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
		for i, w := range items(get(obj, "webhooks")) {
			if n := get(w, "clientConfig", "service", "namespace"); n != nil {
				sites = append(sites, ns(n, fmt.Sprintf("webhooks[%d].clientConfig.service.namespace", i)))
			}
			for j, e := range items(get(w, "namespaceSelector", "matchExpressions")) {
				if scalar(get(e, "key")) != "kubernetes.io/metadata.name" {
					continue
				}
				for k, val := range items(get(e, "values")) {
					sites = append(sites, ns(val, fmt.Sprintf("webhooks[%d].namespaceSelector.matchExpressions[%d].values[%d]", i, j, k)))
				}
			}
		}
	case "Deployment", "DaemonSet", "StatefulSet", "Job", "Pod":
		spec := get(obj, "spec", "template", "spec")
		for _, list := range []string{"initContainers", "containers"} {
			for _, c := range items(get(spec, list)) {
				args := items(get(c, "args"))
				for i := 0; i+1 < len(args); i++ {
					if render, ok := flagSites[scalar(args[i])]; ok {
						what := fmt.Sprintf("%s container %s: %s", id, scalar(get(c, "name")), scalar(args[i]))
						sites = append(sites, site{node: args[i+1], what: what, render: render})
						i++
					}
				}
			}
		}
	}
	for _, s := range sites {
		if s.node.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("manifests: %s is not a string", s.what)
		}
	}
	return sites, nil
}

// checkSitesComplete fails when a string or comment of an object other
// than a CRD holds a default value without being one of the sites: a place
// the chart renders from the values that docSites does not know, which the
// rewrite would leave behind.
func checkSitesComplete(docs []*yaml.Node, sites []site) error {
	known := make(map[*yaml.Node]bool, len(sites))
	for _, s := range sites {
		known[s.node] = true
	}
	for _, d := range docs {
		if scalar(get(d, "kind")) == "CustomResourceDefinition" {
			continue
		}
		var found error
		walk(d, func(n *yaml.Node) {
			for _, def := range []string{defaults.namespace, defaults.trustDomain} {
				switch {
				case found != nil:
				case n.Kind == yaml.ScalarNode && !known[n] && strings.Contains(n.Value, def):
					found = fmt.Errorf("manifests: line %d holds %q outside the places package install rewrites: the chart changed; update package install", n.Line, def)
				case strings.Contains(n.HeadComment+n.LineComment+n.FootComment, def):
					found = fmt.Errorf("manifests: a comment at line %d mentions %q, which the rewrite would leave as it is", n.Line, def)
				}
			}
		})
		if found != nil {
			return found
		}
	}
	return nil
}

// get follows keys through nested mappings; nil when one is missing.
func get(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	return n
}

// items is a sequence's elements, or nil.
func items(n *yaml.Node) []*yaml.Node {
	if n == nil || n.Kind != yaml.SequenceNode {
		return nil
	}
	return n.Content
}

// scalar is a scalar's value, or "".
func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func walk(n *yaml.Node, f func(*yaml.Node)) {
	f(n)
	for _, c := range n.Content {
		walk(c, f)
	}
}

// lineOffsets is the byte offset of the start of each line (index 0: line 1).
func lineOffsets(src []byte) []int {
	offs := []int{0}
	for i, b := range src {
		if b == '\n' {
			offs = append(offs, i+1)
		}
	}
	return offs
}

// offset converts yaml.v3's 1-based line and column (in characters) to a
// byte offset in src.
func offset(src []byte, lines []int, line, col int) (int, error) {
	if line < 1 || line > len(lines) || col < 1 {
		return 0, fmt.Errorf("position %d:%d is outside the text", line, col)
	}
	off := lines[line-1]
	for range col - 1 {
		if off >= len(src) || src[off] == '\n' {
			return 0, fmt.Errorf("position %d:%d is outside the line", line, col)
		}
		_, size := utf8.DecodeRune(src[off:])
		off += size
	}
	return off, nil
}
