package install_test

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/k8s/install"
)

// The manifests for namespace mesh and trust domain example.org: among the
// places that change, the agent's server address and the server's trust
// domain.
func ExampleManifests() {
	out, err := install.Manifests(install.Config{
		Namespace:   "mesh",
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "trustmesh-server.mesh.svc") || strings.Contains(line, `"example.org"`) {
			fmt.Println(strings.TrimSpace(line))
		}
	}
	// Output:
	// - "trustmesh-server.mesh.svc:8443"
	// - "example.org"
}
