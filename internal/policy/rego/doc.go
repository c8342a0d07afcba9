// Package rego compiles and evaluates the inline Rego modules of
// AuthorizationPolicies with action CUSTOM, with OPA embedded in the
// process.
//
// # Model
//
// A CUSTOM policy carries a Rego v1 module. Compile parses, checks and
// compiles it, and prepares the query of its decision, once: when the
// policy is applied (so that `trustmesh apply` and `trustmesh policy
// validate` refuse a bad module, with the line of each problem) and again
// when the proxy receives it. Module.Eval then evaluates the prepared query
// for each request the policy's rules select.
//
// The module declares a package and defines the decision in rules named
// allow (a boolean, required) and reason (a string for logs, optional):
//
//	package ext.check
//
//	default allow := false
//
//	allow if {
//		input.request.method == "GET"
//		startswith(input.request.path, "/public/")
//	}
//
//	reason := "only GET under /public/" if not allow
//
// Both must be single-value rules ("allow if ...", "allow := ..."), not
// sets, objects or functions. The query is data.<package>.allow and
// data.<package>.reason.
//
// # Failing closed
//
// Eval returns Allow true only when allow is the boolean true. When allow is
// undefined (write "default allow := false") or not a boolean, when reason
// is defined but not a string, when a built-in fails (built-in errors are
// strict: division by zero is an error, not an undefined expression), when
// rules conflict, when the evaluation runs out of its time budget or when
// the caller's context is done, Eval returns Allow false and an error that
// says why. The caller denies the request and logs the error.
//
// # Time budget
//
// Each evaluation runs under a deadline, DefaultTimeBudget (10 ms) unless
// WithTimeBudget says otherwise; an evaluation stopped by it returns an
// error wrapping ErrTimeBudget. OPA checks the deadline between evaluation
// steps and inside numbers.range and net.cidr_expand, so the budget bounds
// loops and comprehensions; a single call of another built-in on a huge
// argument runs to its end. There is no memory budget.
//
// # What a module may use
//
// A decision is a pure function of the input, the module and the clock.
// The module is compiled against the capabilities of this OPA version
// without the built-ins DeniedBuiltins lists, and with an empty allow_net
// list; calling (or replacing with "with") a denied built-in is a compile
// error that says why:
//
//   - http.send and net.lookup_ip_addr reach the network;
//   - opa.runtime exposes the proxy's environment and configuration;
//   - json.match_schema and json.verify_schema load a schema's $ref
//     documents, file:// ones from the proxy's file system included;
//   - trace writes to a trace nobody collects;
//   - rand.intn and uuid.rfc4122 are random, so decisions would not be
//     reproducible.
//
// time.now_ns is kept: policies need time windows, it has no side effect,
// and it returns the same instant throughout one evaluation. The io.jwt,
// crypto and other built-ins are pure and kept. print calls compile but
// are removed: the proxy installs no print hook.
//
// There is no data store: data holds nothing but the module's own rules.
// Imports of, and references to, data outside the module's package are
// compile errors rather than always-undefined documents.
//
// # Input
//
// The input document is built by the proxy for each request:
//
//	{
//	  "source": {
//	    "principal": "spiffe://td/ns/a/sa/b",  // peer's SPIFFE ID (mTLS)
//	    "namespace": "a",
//	    "ip": "10.0.0.1",
//	    "port": 1234
//	  },
//	  "destination": {
//	    "principal": "spiffe://td/ns/default/sa/orders",
//	    "ip": "10.0.0.2",
//	    "port": 8080
//	  },
//	  "request": {
//	    "method": "GET",
//	    "path": "/normalized/path",            // after path normalization
//	    "query": "a=b",                        // raw query, without "?"
//	    "host": "orders.default",
//	    "scheme": "http",
//	    "headers": {                           // names lower-cased; repeated
//	      "user-agent": "curl/8.5.0"           // headers joined by ", "
//	    },
//	    "auth": {                              // present when a JWT was verified
//	      "principal": "iss/sub",
//	      "claims": {"sub": "alice", "groups": ["admin"]},
//	      "audiences": ["orders"],
//	      "presenter": "client-id"
//	    }
//	  },
//	  "connection": {"mtls": true, "sni": "orders.default.svc"}
//	}
//
// Ports are numbers; everything else is a string, a boolean, or JSON (the
// claims). Fields that do not apply are absent, so a module should not
// assume that input.request.auth exists.
//
// # Concurrency
//
// A Module (and a Query) is immutable once built and safe for concurrent
// use: the proxy shares one per policy among all its connections, and
// replaces it as a whole when the policy changes.
//
// NewQuery prepares an arbitrary query over a module with the same
// restrictions, for benchmarks and tools.
package rego
