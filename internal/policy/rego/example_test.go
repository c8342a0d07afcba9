package rego_test

import (
	"context"
	"fmt"

	"github.com/trustmesh/trustmesh/internal/policy/rego"
)

func ExampleCompile() {
	m, err := rego.Compile("default/ext-check", `package ext.check

default allow := false

allow if {
	input.request.method == "GET"
	startswith(input.request.path, "/public/")
}

reason := sprintf("%s %s is not public", [input.request.method, input.request.path]) if not allow
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	d, err := m.Eval(context.Background(), map[string]any{
		"request": map[string]any{"method": "POST", "path": "/public/form"},
	})
	fmt.Printf("allow=%t reason=%q err=%v\n", d.Allow, d.Reason, err)
	// Output: allow=false reason="POST /public/form is not public" err=<nil>
}

func ExampleCompile_refused() {
	_, err := rego.Compile("default/ext-check", `package ext.check

allow if http.send({"method": "GET", "url": "http://authz.internal/"}).status_code == 200
`)
	fmt.Println(err)
	// Output: default/ext-check:3: built-in function http.send is not allowed in CUSTOM policies: it makes network requests
}
