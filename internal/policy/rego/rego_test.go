package rego

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

// requestInput is an input document of the documented shape.
func requestInput() map[string]any {
	return map[string]any{
		"source": map[string]any{
			"principal": "spiffe://td/ns/a/sa/b",
			"namespace": "a",
			"ip":        "10.0.0.1",
			"port":      1234,
		},
		"destination": map[string]any{
			"principal": "spiffe://td/ns/default/sa/orders",
			"ip":        "10.0.0.2",
			"port":      8080,
		},
		"request": map[string]any{
			"method":  "GET",
			"path":    "/public/index.html",
			"query":   "a=b",
			"host":    "orders.default",
			"scheme":  "http",
			"headers": map[string]any{"user-agent": "curl/8.5.0", "x-tenant": "acme"},
			"auth": map[string]any{
				"principal": "https://issuer.example/alice",
				"claims": map[string]any{
					"sub":    "alice",
					"groups": []any{"dev", "admin"},
				},
				"audiences": []any{"orders"},
				"presenter": "web",
			},
		},
		"connection": map[string]any{"mtls": true, "sni": "orders.default.svc"},
	}
}

// with returns requestInput with the value at the dotted path replaced (or
// removed when value is nil).
func with(path string, value any) map[string]any {
	input := requestInput()
	keys := strings.Split(path, ".")
	m := input
	for _, k := range keys[:len(keys)-1] {
		m = m[k].(map[string]any)
	}
	if value == nil {
		delete(m, keys[len(keys)-1])
	} else {
		m[keys[len(keys)-1]] = value
	}
	return input
}

func mustCompile(t testing.TB, src string, opts ...Option) *Module {
	t.Helper()
	m, err := Compile("default/test", src, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts []Option
		// want are substrings of the error.
		want []string
	}{
		{
			name: "syntax-error",
			src:  "package p\n\nallow if {\n\tinput.x ==\n}\n",
			want: []string{"default/test:5:", "rego_parse_error", "unexpected } token"},
		},
		{
			name: "rego-v0-syntax",
			src:  "package p\n\nallow { true }\n",
			want: []string{"default/test:3:", "`if` keyword is required"},
		},
		{
			name: "no-package",
			src:  "allow if true\n",
			want: []string{"default/test:1:", "no package declaration"},
		},
		{
			name: "empty",
			src:  "# nothing but a comment\n",
			want: []string{"default/test: ", "the module is empty"},
		},
		{
			name: "no-allow-rule",
			src:  "package p\n\nreason := \"x\"\n",
			want: []string{"default/test: ", "defines no rule named allow"},
		},
		{
			name: "allow-multi-value",
			src:  "package p\n\nallow contains x if x := 1\n",
			want: []string{"default/test:3:", "allow is a multi-value (set) rule"},
		},
		{
			name: "allow-function",
			src:  "package p\n\nallow(x) if x\n",
			want: []string{"default/test:3:", "allow is a function"},
		},
		{
			name: "allow-ref-head",
			src:  "package p\n\nallow.read if true\n",
			want: []string{"default/test:3:", "allow has a reference head (allow.read)"},
		},
		{
			name: "reason-multi-value",
			src:  "package p\n\nallow := true\n\nreason contains \"x\"\n",
			want: []string{"default/test:5:", "reason is a multi-value (set) rule"},
		},
		{
			name: "http-send",
			src: `package p

allow if {
	resp := http.send({"method": "GET", "url": "http://169.254.169.254/"})
	resp.status_code == 200
}
`,
			want: []string{"default/test:4:", "built-in function http.send is not allowed", "network requests"},
		},
		{
			name: "http-send-replaced-with-with",
			src:  "package p\n\nallow if true with http.send as {}\n",
			want: []string{"default/test:3:", "built-in function http.send is not allowed"},
		},
		{
			name: "net-lookup-ip-addr",
			src:  "package p\n\nallow if count(net.lookup_ip_addr(\"example.com\")) > 0\n",
			want: []string{"default/test:3:", "built-in function net.lookup_ip_addr is not allowed", "DNS"},
		},
		{
			name: "opa-runtime",
			src:  "package p\n\nallow if opa.runtime().env.HOME\n",
			want: []string{"default/test:3:", "built-in function opa.runtime is not allowed"},
		},
		{
			name: "json-match-schema-reads-files",
			src:  "package p\n\nallow if json.match_schema({}, {\"$ref\": \"file:///etc/passwd\"})[0]\n",
			want: []string{"default/test:3:", "built-in function json.match_schema is not allowed", "files"},
		},
		{
			name: "rand-intn",
			src:  "package p\n\nallow if rand.intn(\"x\", 2) == 0\n",
			want: []string{"default/test:3:", "built-in function rand.intn is not allowed", "random"},
		},
		{
			name: "trace",
			src:  "package p\n\nallow if trace(\"x\")\n",
			want: []string{"default/test:3:", "built-in function trace is not allowed"},
		},
		{
			name: "two-denied-calls-two-errors",
			src:  "package p\n\nallow if {\n\topa.runtime()\n\tuuid.rfc4122(\"k\")\n}\n",
			want: []string{"default/test:4: built-in function opa.runtime", "\ndefault/test:5: built-in function uuid.rfc4122"},
		},
		{
			name: "import-other-data",
			src:  "package p\n\nimport data.secrets\n\nallow if secrets.ok\n",
			want: []string{"default/test:3:", "import data.secrets", "no other data"},
		},
		{
			name: "reference-other-data",
			src:  "package p\n\nallow if data.secrets.ok\n",
			want: []string{"default/test:3:", "reference to data.secrets.ok", "own package (data.p)"},
		},
		{
			name: "reference-parent-package",
			src:  "package p.q\n\nallow if data.p.other\n",
			want: []string{"default/test:3:", "reference to data.p.other"},
		},
		{
			name: "unsafe-variable",
			src:  "package p\n\nallow if y\n",
			want: []string{"default/test:3:", "rego_unsafe_var_error", "var y is unsafe"},
		},
		{
			name: "type-error",
			src:  "package p\n\nallow if startswith(input.x, 1)\n",
			want: []string{"default/test:3:", "rego_type_error", "startswith"},
		},
		{
			name: "time-budget-zero",
			src:  "package p\n\nallow := true\n",
			opts: []Option{WithTimeBudget(0)},
			want: []string{"default/test: time budget 0s: want a positive duration"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Compile("default/test", tc.src, tc.opts...)
			if err == nil {
				t.Fatalf("Compile: got a module (%v), want an error", m)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Compile: got error\n%v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	tests := []struct {
		name string
		src  string
	}{
		{name: "allow-only", src: "package p\n\nallow := true\n"},
		{name: "default-and-rule", src: "package p\n\ndefault allow := false\n\nallow if input.request.method == \"GET\"\n"},
		{name: "nested-package-own-data", src: "package ext.check\n\nallow if data.ext.check.ok\n\nok := true\n"},
		{name: "import-own-package", src: "package ext.check\n\nimport data.ext.check.ok\n\nallow if ok\n\nok := true\n"},
		{name: "import-input", src: "package p\n\nimport input.request\n\nallow if request.method == \"GET\"\n"},
		{name: "import-rego-v1", src: "package p\n\nimport rego.v1\n\nallow if true\n"},
		{name: "time-now-ns", src: "package p\n\nallow if time.now_ns() > 0\n"},
		{name: "jwt-decode", src: "package p\n\nallow if {\n\t[_, payload, _] := io.jwt.decode(input.token)\n\tpayload.sub == \"alice\"\n}\n"},
		{name: "print-is-removed", src: "package p\n\nallow if {\n\tprint(\"hello\")\n\ttrue\n}\n"},
		{name: "helper-function", src: "package p\n\nis_admin(claims) if \"admin\" in claims.groups\n\nallow if is_admin(input.request.auth.claims)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile("default/test", tc.src); err != nil {
				t.Errorf("Compile: %v, want no error", err)
			}
		})
	}
}

func TestEval(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		input map[string]any
		want  Decision
		// wantErr is a substring of the error; empty for none.
		wantErr string
	}{
		{
			name:  "allow-true",
			src:   publicGET,
			input: requestInput(),
			want:  Decision{Allow: true},
		},
		{
			name:  "allow-false",
			src:   publicGET,
			input: with("request.method", "POST"),
			want:  Decision{Allow: false},
		},
		{
			name:    "allow-undefined-denies",
			src:     "package p\n\nallow if input.request.method == \"GET\"\n",
			input:   with("request.method", "POST"),
			want:    Decision{Allow: false},
			wantErr: "default/test: allow is undefined for this input",
		},
		{
			name:    "allow-not-boolean-denies",
			src:     "package p\n\nallow := \"yes\"\n",
			input:   requestInput(),
			want:    Decision{Allow: false},
			wantErr: "default/test: allow is a string, want a boolean",
		},
		{
			name:    "allow-number-denies",
			src:     "package p\n\nallow := 1\n",
			input:   requestInput(),
			wantErr: "allow is a number, want a boolean",
		},
		{
			name: "reason-returned-with-deny",
			src: `package p

default allow := false

allow if input.request.method == "GET"

reason := sprintf("method %s is not allowed", [input.request.method]) if not allow
`,
			input: with("request.method", "DELETE"),
			want:  Decision{Allow: false, Reason: "method DELETE is not allowed"},
		},
		{
			name:  "reason-undefined-is-empty",
			src:   "package p\n\nallow := true\n\nreason := \"never\" if false\n",
			input: requestInput(),
			want:  Decision{Allow: true},
		},
		{
			name:    "reason-not-string-denies",
			src:     "package p\n\nallow := true\n\nreason := 42\n",
			input:   requestInput(),
			want:    Decision{Allow: false},
			wantErr: "reason is a number, want a string",
		},
		{
			name:    "reason-kept-when-allow-undefined",
			src:     "package p\n\nallow if false\n\nreason := \"no rule matched\"\n",
			input:   requestInput(),
			want:    Decision{Allow: false, Reason: "no rule matched"},
			wantErr: "allow is undefined",
		},
		{
			name:  "jwt-claims",
			src:   adminClaims,
			input: requestInput(),
			want:  Decision{Allow: true},
		},
		{
			name:  "jwt-claims-missing-group",
			src:   adminClaims,
			input: with("request.auth.claims.groups", []any{"dev"}),
			want:  Decision{Allow: false},
		},
		{
			name:  "jwt-absent",
			src:   adminClaims,
			input: with("request.auth", nil),
			want:  Decision{Allow: false},
		},
		{
			name:  "source-principal-prefix",
			src:   namespaceA,
			input: requestInput(),
			want:  Decision{Allow: true},
		},
		{
			name:  "source-principal-other-namespace",
			src:   namespaceA,
			input: with("source.principal", "spiffe://td/ns/b/sa/b"),
			want:  Decision{Allow: false},
		},
		{
			name:  "port-is-a-number",
			src:   "package p\n\ndefault allow := false\n\nallow if input.destination.port == 8080\n",
			input: requestInput(),
			want:  Decision{Allow: true},
		},
		{
			name:  "string-slice-input",
			src:   "package p\n\ndefault allow := false\n\nallow if \"orders\" in input.request.auth.audiences\n",
			input: with("request.auth.audiences", []string{"orders"}),
			want:  Decision{Allow: true},
		},
		{
			name:  "nil-input",
			src:   publicGET,
			input: nil,
			want:  Decision{Allow: false},
		},
		{
			name:    "builtin-error-is-strict",
			src:     "package p\n\ndefault allow := false\n\nallow if to_number(input.request.query) > 1\n",
			input:   requestInput(),
			want:    Decision{Allow: false},
			wantErr: "default/test:5: eval_builtin_error: to_number",
		},
		{
			name: "conflicting-rules",
			src: `package p

allow := true if input.request.method == "GET"

allow := false if input.request.scheme == "http"
`,
			input:   requestInput(),
			want:    Decision{Allow: false},
			wantErr: "eval_conflict_error",
		},
		{
			name:    "unserializable-input",
			src:     publicGET,
			input:   map[string]any{"x": make(chan int)},
			want:    Decision{Allow: false},
			wantErr: "default/test: input:",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mustCompile(t, tc.src)
			got, err := m.Eval(context.Background(), tc.input)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Eval: %v, want no error", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Eval: got no error, want one containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Eval: got error %q, want it to contain %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Eval: decision differs (-want +got):\n%s", diff)
			}
			if err != nil && got.Allow {
				t.Errorf("Eval: got Allow true with error %v, want false", err)
			}
		})
	}
}

const (
	publicGET = `package p

default allow := false

allow if {
	input.request.method == "GET"
	startswith(input.request.path, "/public/")
}
`
	adminClaims = `package p

default allow := false

allow if "admin" in input.request.auth.claims.groups
`
	namespaceA = `package p

default allow := false

allow if startswith(input.source.principal, "spiffe://td/ns/a/")
`
	// expensive runs for seconds unless stopped.
	expensive = `package p

allow if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0
`
)

func TestEvalTimeBudget(t *testing.T) {
	budget := 2 * time.Millisecond
	m := mustCompile(t, expensive, WithTimeBudget(budget))
	start := time.Now()
	got, err := m.Eval(context.Background(), requestInput())
	elapsed := time.Since(start)
	if got.Allow {
		t.Errorf("Eval: got Allow true, want false")
	}
	if !errors.Is(err, ErrTimeBudget) {
		t.Errorf("Eval: got error %v, want one wrapping ErrTimeBudget", err)
	}
	if want := "evaluation stopped: time budget exceeded (2ms)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Eval: got error %v, want it to contain %q", err, want)
	}
	// Generous for a loaded CI machine; unstopped it takes seconds.
	if elapsed > 500*time.Millisecond {
		t.Errorf("Eval took %v with a budget of %v", elapsed, budget)
	}
}

func TestEvalCallerCancelled(t *testing.T) {
	m := mustCompile(t, expensive, WithTimeBudget(time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := m.Eval(ctx, requestInput())
	if got.Allow {
		t.Errorf("Eval: got Allow true, want false")
	}
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeBudget) {
		t.Errorf("Eval: got error %v, want one wrapping context.Canceled and not ErrTimeBudget", err)
	}
}

func TestEvalConcurrent(t *testing.T) {
	m := mustCompile(t, `package p

default allow := false

allow if {
	input.request.method == "GET"
	startswith(input.source.principal, "spiffe://td/ns/a/")
}

reason := sprintf("%s %s", [input.request.method, input.source.principal])
`,
		// The budget is wall-clock time. CPU-bound goroutines outnumbering
		// the CPUs are preempted every 10 ms, the default budget, and wait
		// longer than that for their turn: with the default, evaluations
		// here fail for lack of a CPU, which is not what this test is about.
		WithTimeBudget(time.Minute))
	const goroutines, evals = 16, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range evals {
				method := "GET"
				if (g+i)%2 == 1 {
					method = "PUT"
				}
				d, err := m.Eval(context.Background(), with("request.method", method))
				want := Decision{Allow: method == "GET", Reason: method + " spiffe://td/ns/a/sa/b"}
				if err != nil || d != want {
					errs <- fmt.Errorf("goroutine %d eval %d: got %+v, %w; want %+v", g, i, d, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDeniedBuiltins(t *testing.T) {
	caps := capabilities()
	if caps.AllowNet == nil || len(caps.AllowNet) != 0 {
		t.Errorf("capabilities: got allow_net %v, want an empty, non-nil list", caps.AllowNet)
	}
	for _, b := range caps.Builtins {
		if _, denied := deniedBuiltins[b.Name]; denied {
			t.Errorf("capabilities: got denied built-in %s", b.Name)
		}
	}
	for _, want := range []string{"http.send", "net.lookup_ip_addr", "opa.runtime"} {
		if !slices.Contains(DeniedBuiltins(), want) {
			t.Errorf("DeniedBuiltins: got %v, want it to contain %s", DeniedBuiltins(), want)
		}
	}
	// Without the check that explains the refusal, the capabilities alone
	// refuse the call.
	t.Run("capabilities-alone", func(t *testing.T) {
		mod, err := ast.ParseModuleWithOpts("t", "package p\n\nallow if http.send({}).status_code == 200\n", ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("ParseModule: %v", err)
		}
		c := ast.NewCompiler().WithCapabilities(caps)
		c.Compile(map[string]*ast.Module{"t": mod})
		if want := "undefined function http.send"; !c.Failed() || !strings.Contains(c.Errors.Error(), want) {
			t.Errorf("Compile: got errors %v, want one containing %q", c.Errors, want)
		}
	})
	for _, name := range DeniedBuiltins() {
		t.Run(name, func(t *testing.T) {
			src := fmt.Sprintf("package p\n\nallow if %s(\"x\")\n", name)
			_, err := Compile("default/test", src)
			if want := "built-in function " + name + " is not allowed"; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Compile: got error %v, want one containing %q", err, want)
			}
		})
	}
}

func TestNewQuery(t *testing.T) {
	const src = `package bench

allow if input.request.method == "GET"

helper := 7
`
	tests := []struct {
		name  string
		query string
		want  any
	}{
		{name: "allow", query: "data.bench.allow", want: true},
		{name: "helper", query: "data.bench.helper", want: "7"},
		{name: "input", query: "input.request.host", want: "orders.default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := NewQuery("bench", src, tc.query)
			if err != nil {
				t.Fatalf("NewQuery: %v", err)
			}
			rs, err := q.Eval(context.Background(), requestInput())
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if len(rs) != 1 || len(rs[0].Expressions) != 1 {
				t.Fatalf("Eval: got %v, want one result", rs)
			}
			got := rs[0].Expressions[0].Value
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Eval: got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("no-allow-needed", func(t *testing.T) {
		if _, err := NewQuery("bench", "package bench\n\nx := 1\n", "data.bench.x"); err != nil {
			t.Errorf("NewQuery: %v, want no error", err)
		}
	})
	t.Run("http-send-refused", func(t *testing.T) {
		_, err := NewQuery("bench", "package bench\n\nx := http.send({})\n", "data.bench.x")
		if want := "http.send is not allowed"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewQuery: got error %v, want one containing %q", err, want)
		}
	})
	t.Run("http-send-in-query-refused", func(t *testing.T) {
		_, err := NewQuery("bench", "package bench\n\nx := 1\n", `http.send({"method": "GET", "url": "http://x"})`)
		if want := "undefined function http.send"; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewQuery: got error %v, want one containing %q", err, want)
		}
	})
	t.Run("time-budget", func(t *testing.T) {
		q, err := NewQuery("bench", expensive, "data.p.allow", WithTimeBudget(time.Millisecond))
		if err != nil {
			t.Fatalf("NewQuery: %v", err)
		}
		if _, err := q.Eval(context.Background(), nil); !errors.Is(err, ErrTimeBudget) {
			t.Errorf("Eval: got error %v, want one wrapping ErrTimeBudget", err)
		}
	})
}
