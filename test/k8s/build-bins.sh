#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the Kubernetes tests run (through controller-runtime's
# envtest, KUBEBUILDER_ASSETS) from their Go modules, through the Go module proxy, into a per-machine
# cache directory, and prints that directory. Neither is a Debian package; there is no kubelet.
#
# The build logic is copied from shared/k8s/build-k8s-bins.sh (kube-apiserver from k8s.io/kubernetes
# with every staging module it replaces locally pinned to v0.<minor>.<patch>; etcd from
# go.etcd.io/etcd/server/v3). About 5 minutes on 2 cores from a cold module cache; a no-op when both
# binaries are already there and report the pinned versions.
#
# usage: test/k8s/build-bins.sh            (prints the binaries' directory on stdout)
# env:   TRUSTMESH_K8S_BIN_DIR  the directory (default: the per-machine cache below)
#        K8S_VERSION, ETCD_VERSION (defaults 1.34.0 and 3.6.16: keep in step with the Makefile)
set -euo pipefail
K8S=${K8S_VERSION:-1.34.0}
ETCDV=${ETCD_VERSION:-3.6.16}
OUT=${TRUSTMESH_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/trustmesh/k8s/kube-apiserver-$K8S-etcd-$ETCDV}

# up_to_date reports whether both binaries exist and report the pinned versions.
up_to_date() {
  [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" ]] || return 1
  [[ "$("$OUT/kube-apiserver" --version 2>/dev/null)" == "Kubernetes v$K8S" ]] || return 1
  "$OUT/etcd" --version 2>/dev/null | grep -qx "etcd Version: $ETCDV" || return 1
}

if up_to_date; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SRC=$(mktemp -d); trap 'rm -rf "$SRC"' EXIT
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
start=$SECONDS
# Build into temporary names and rename at the end, so an interrupted build never leaves a binary
# that looks complete.
{
  # kube-apiserver: k8s.io/kubernetes, with every staging module it replaces locally pinned to
  # v0.<minor>.<patch>.
  mkdir -p "$SRC/kas" && cd "$SRC/kas"
  printf 'module local/probe\n\ngo 1.24\n' > go.mod
  upstream=$(go mod download -json "k8s.io/kubernetes@v$K8S" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  { printf 'module local/kubeapiserver\n\ngo 1.24.0\n\ngodebug default=go1.24\n\nrequire k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S"
    sed -n '/^replace (/,/^)/p' "$upstream" | awk -v v="v0.${K8S#1.}" '/=> \.\/staging/ {print "\t"$1" => "$1" "v}'
    echo ')'; } > go.mod
  cat > main.go <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() { os.Exit(cli.Run(app.NewAPIServerCommand())) }
GO
  MINOR=${K8S#1.}; MINOR=${MINOR%%.*}
  V=k8s.io/component-base/version
  go mod tidy
  go build -trimpath -o "$OUT/kube-apiserver.tmp" \
    -ldflags "-s -w -X $V.gitVersion=v$K8S -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean" .

  # etcd
  mkdir -p "$SRC/etcd" && cd "$SRC/etcd"
  printf 'module local/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCDV" > go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .
} >&2
mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
mv "$OUT/etcd.tmp" "$OUT/etcd"

if ! up_to_date; then
  echo "build-bins.sh: built binaries in $OUT do not report kube-apiserver v$K8S and etcd $ETCDV" >&2
  exit 1
fi
echo "build-bins.sh: built kube-apiserver v$K8S and etcd $ETCDV in $((SECONDS - start)) s" >&2
echo "$OUT"
