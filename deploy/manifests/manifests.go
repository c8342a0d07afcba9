// Package manifests embeds trustmesh.yaml: the Helm chart deploy/helm/trustmesh
// rendered with its default values and the Namespace (`make manifests`), for
// `trustmesh install`. It lives beside the file because go:embed reads only
// files below the package's directory; internal/k8s/install is its one user.
package manifests

import _ "embed"

// YAML is trustmesh.yaml: the manifests for namespace trustmesh-system and
// trust domain cluster.local, as a stream of YAML documents.
//
//go:embed trustmesh.yaml
var YAML string
