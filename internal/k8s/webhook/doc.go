// Package webhook holds trustmesh's Kubernetes admission webhooks and the
// HTTPS server that serves them.
//
// # Validation
//
// The Validator (PathValidate) refuses a CREATE or UPDATE of a
// trustmesh.dev/v1 object (AuthorizationPolicy, MeshConfig,
// PeerAuthentication, RequestAuthentication, Service, Workload) that
// `trustmesh policy validate` and the server's apply would refuse, with
// the same messages: the object is cut to the shape of a trustmesh object
// (apiVersion, kind, metadata.name/namespace/labels/annotations, spec;
// status and Kubernetes' own metadata dropped), decoded by the same strict
// decoder (policy.Unmarshal, which Decode is built on) and checked by
// authz.Validate for the mesh's trust domain, which compiles CUSTOM Rego
// and parses inline JWKS. DELETE, subresources (status) and updates of an
// object being deleted are always allowed. Unknown kinds are refused.
//
// # Injection
//
// The Injector (PathInject) adds the trustmesh proxy to pods. Which pods
// it sees is the MutatingWebhookConfiguration's business: those in
// namespaces labelled
//
//	trustmesh.dev/inject: enabled
//
// except the trustmesh system namespace (MutatingWebhookConfiguration
// builds that selector). A pod opts out with the annotation (or label)
// trustmesh.dev/inject: "false", or Istio's sidecar.istio.io/inject:
// "false". Pods on the host network, non-Linux pods and pods that carry
// the trustmesh.dev/status annotation (already injected) are left alone.
//
// An injected pod gets, as a JSON patch:
//
//   - trustmesh-init, an init container running `trustmesh redirect` as
//     root with NET_ADMIN and NET_RAW: it writes the pod's iptables nat
//     rules (see package redirect) and exits. Inbound TCP to every port but
//     the proxy's admin port (and trustmesh.dev/exclude-inbound-ports) goes
//     to the proxy's inbound listener; the app's outbound TCP to the ports
//     of trustmesh.dev/capture-outbound-ports (none by default) goes to the
//     proxy's HTTP proxy listener; the proxy's own traffic (uid 1337) is
//     never redirected.
//   - trustmesh-proxy, a native sidecar (an init container with
//     restartPolicy Always, Kubernetes 1.29 and later) placed right after
//     trustmesh-init and before the pod's own init containers, running
//     `trustmesh proxy` as uid 1337 with the agent's Workload API socket
//     from a hostPath volume and --spiffe-id spiffe://TD/ns/NS/sa/SA. Its
//     startup probe polls /ready on the admin port, so the app's
//     containers start only once the proxy has its SVID and configuration.
//   - the trustmesh-agent-socket volume and the trustmesh.dev/status
//     annotation.
//
// The proxy forwards inbound connections to one app port: the
// trustmesh.dev/inbound-port annotation, else the first TCP port the
// pod's containers declare; a pod that declares none gets no inbound
// redirection. Pod Security Standards: trustmesh-init's capabilities and
// the hostPath volume need the privileged level.
//
// # Concurrency
//
// Validator and Injector are immutable after construction and safe for
// concurrent use. A Server is run once: Run serves until its context is
// cancelled. Certificates come from ServerConfig.GetCertificate at every
// handshake, so the caller rotates them by changing what it returns.
package webhook
