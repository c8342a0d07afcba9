package redirect_test

import (
	"fmt"

	"github.com/trustmesh/trustmesh/internal/k8s/redirect"
)

// The rules trustmesh-init installs in an injected pod by default: every
// inbound port but the proxy's admin port goes to the proxy.
func ExampleRules() {
	rules, err := redirect.Rules(redirect.Config{
		ProxyUID:            1337,
		InboundPort:         15006,
		InboundPorts:        redirect.AllPorts,
		ExcludeInboundPorts: []uint16{15000},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(string(rules))
	// Output:
	// # trustmesh redirect: the nat table of this pod's network namespace
	// *nat
	// :PREROUTING ACCEPT [0:0]
	// :INPUT ACCEPT [0:0]
	// :OUTPUT ACCEPT [0:0]
	// :POSTROUTING ACCEPT [0:0]
	// :TRUSTMESH_INBOUND - [0:0]
	// :TRUSTMESH_IN_REDIRECT - [0:0]
	// # inbound: connections to the pod go to the proxy's inbound listener
	// -A PREROUTING -p tcp -j TRUSTMESH_INBOUND
	// -A TRUSTMESH_INBOUND -p tcp -m tcp --dport 15000 -j RETURN
	// -A TRUSTMESH_INBOUND -p tcp -j TRUSTMESH_IN_REDIRECT
	// -A TRUSTMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
	// COMMIT
}
