package istio_test

import (
	"fmt"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/istio"
)

func ExampleConvert() {
	objs, err := istio.Convert([]byte(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
`), istio.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	y, _ := policy.ToYAML(objs[0])
	fmt.Print(string(y))
	// Output:
	// apiVersion: trustmesh.dev/v1
	// kind: PeerAuthentication
	// metadata:
	//   name: default
	//   namespace: trustmesh-system
	// spec:
	//   mtls:
	//     mode: STRICT
}

func ExampleConvert_errors() {
	input := []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: foo
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: ingress}
  action: CUSTOM
  provider:
    name: my-ext-authz
  rules:
  - {}
`)
	_, err := istio.Convert(input, istio.Options{})
	// The errors name fields as policy.Decode's do: a Locator finds their
	// lines.
	fmt.Println(policy.NewLocator(input).AnnotateDecode(err))
	// Output:
	// line 7: document 1 (AuthorizationPolicy "foo/ext-authz"): spec.targetRefs: not supported: trustmesh selects workloads with selector.matchLabels; replace targetRefs with a selector for the labels of the workloads the policy is for
	// line 10: document 1 (AuthorizationPolicy "foo/ext-authz"): spec.provider.rego: trustmesh evaluates CUSTOM policies with inline Rego, not with an extension provider ("my-ext-authz"): add spec.provider.rego, a Rego module that defines allow
}
