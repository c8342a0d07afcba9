package rego

import (
	"context"
	"testing"
	"time"
)

// FuzzCompile compiles random module sources and evaluates those that
// compile: neither may panic, and a failed evaluation never allows.
func FuzzCompile(f *testing.F) {
	seeds := []string{
		publicGET,
		adminClaims,
		namespaceA,
		"package p\n\nallow := true\n\nreason := \"ok\"\n",
		"package p\n\nallow if {\n\tinput.x ==\n}\n",
		"package p\n\nallow contains x if x := 1\n",
		"package p\n\nallow(x) if x\n",
		"package p\n\nallow if http.send({})\n",
		"package p\n\nimport data.secrets\n\nallow if secrets.ok\n",
		"package p.q\n\nallow if data.p.q.ok\n\nok := input.request.method == \"GET\"\n",
		"package p\n\nallow := \"yes\"\n",
		"package p\n\nallow if every x in input.request.auth.claims.groups { x != \"\" }\n",
		"package p\n\nallow if regex.match(`^/api/v[0-9]+/`, input.request.path)\n",
		"allow if true\n",
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	input := requestInput()
	f.Fuzz(func(t *testing.T, src string) {
		m, err := Compile("fuzz", src, WithTimeBudget(5*time.Millisecond))
		if err != nil {
			if m != nil {
				t.Fatalf("Compile: got a module and error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("Compile: got an empty error message")
			}
			return
		}
		d, err := m.Eval(context.Background(), input)
		if err != nil && d.Allow {
			t.Fatalf("Eval: got Allow true with error %v", err)
		}
	})
}
