package rego

import (
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// deniedBuiltins are the OPA built-in functions a CUSTOM module may not
// call, with the reason shown to the operator who tries. They are removed
// from the capabilities the module is compiled against, so a call to one of
// them cannot compile; the reason only makes the error clear.
//
// The rule: a decision is a pure function of the input, the module and the
// clock. Built-ins that reach the network, the file system or the process,
// or that return a different value for the same arguments (other than
// time.now_ns), are denied.
var deniedBuiltins = map[string]string{
	"http.send":          "it makes network requests",
	"net.lookup_ip_addr": "it makes DNS queries",
	"opa.runtime":        "it exposes the proxy's environment and configuration",
	// A JSON schema's $ref may name file:// and http(s):// documents, which
	// these built-ins load: they read files and make network requests.
	"json.match_schema":  "it loads the schema's $ref documents from files and the network",
	"json.verify_schema": "it loads the schema's $ref documents from files and the network",
	"trace":              "it writes to the evaluation trace, which the proxy does not collect",
	"rand.intn":          "it is random: a decision must be reproducible",
	"uuid.rfc4122":       "it is random: a decision must be reproducible",
}

// DeniedBuiltins returns the names of the built-in functions a CUSTOM
// module may not call, sorted.
func DeniedBuiltins() []string {
	return slices.Sorted(maps.Keys(deniedBuiltins))
}

// capabilities returns the capabilities of this OPA version without the
// denied built-ins, and with an empty allow_net list (no host may be
// contacted: a second lock on the network, should a built-in that connects
// be added to OPA later and not be denied here).
func capabilities() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion(ast.CapabilitiesRegoVersion(ast.RegoV1))
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		_, denied := deniedBuiltins[b.Name]
		return denied
	})
	caps.AllowNet = []string{}
	return caps
}
