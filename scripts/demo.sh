#!/usr/bin/env bash
# The trustmesh demo: a control plane, a node agent, and a workload (this
# shell's user) fetching its SPIFFE identity over the Workload API.
set -euo pipefail
cd "$(dirname "$0")/.."
TM=${TM:-$PWD/bin/trustmesh}
NODE_PORT=${DEMO_NODE_PORT:-18443}
ADMIN_PORT=${DEMO_ADMIN_PORT:-18444}
work=$(mktemp -d /tmp/trustmesh-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { # wait_for PATH WHAT
  for _ in $(seq 1 100); do [ -e "$1" ] && return 0; sleep 0.1; done
  echo "demo: $2 did not come up; its log:" >&2; cat "$work"/*.log >&2; exit 1
}

step "start the control plane (trust domain demo.trustmesh.dev)"
"$TM" server --data-dir "$work/server" --trust-domain demo.trustmesh.dev \
  --listen 127.0.0.1:$NODE_PORT --admin-listen 127.0.0.1:$ADMIN_PORT >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "$work/server/admin/server" "the server"
echo "CA bundle: $work/server/bundle.pem"
"$TM" cert inspect "$work/server/bundle.pem" | sed 's/^/  /'

step "register this shell's user as a workload on node-1"
cat >"$work/workload.yaml" <<YAML
apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata:
  name: default
spec:
  x509SVIDTTL: 10m
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata:
  name: demo-app
  namespace: default
spec:
  spiffeID: spiffe://demo.trustmesh.dev/ns/default/sa/demo-app
  parentID: spiffe://demo.trustmesh.dev/trustmesh/node/node-1
  selectors: ["unix:uid:$(id -u)"]
YAML
"$TM" apply -f "$work/workload.yaml" --data-dir "$work/server"
"$TM" get workloads --data-dir "$work/server"

step "create a single-use join token and start the node agent"
token=$("$TM" token create --node node-1 --ttl 5m --data-dir "$work/server")
"$TM" agent --server 127.0.0.1:$NODE_PORT --join-token "$token" \
  --trust-bundle "$work/server/bundle.pem" --socket "$work/agent.sock" --data-dir "$work/agent" >"$work/agent.log" 2>&1 &
pids+=($!)
wait_for "$work/agent.sock" "the agent"

step "the workload fetches its X.509-SVID over the SPIFFE Workload API"
"$TM" cert fetch --socket "$work/agent.sock" --write "$work/svid"
echo
echo "verify the chain with openssl:"
if command -v openssl >/dev/null; then
  openssl verify -CAfile "$work/svid/bundle.pem" "$work/svid/svid.pem" | sed 's/^/  /'
fi

step "the same join token cannot be used twice"
if "$TM" agent --server 127.0.0.1:$NODE_PORT --join-token "$token" --trust-bundle "$work/server/bundle.pem" \
     --socket "$work/agent2.sock" --data-dir "$work/agent2" >"$work/agent2.log" 2>&1; then
  echo "unexpected: a reused token was accepted" >&2; exit 1
fi
sed 's/^/  /' "$work/agent2.log" | tail -1

step "the audit log recorded all of it"
"$TM" audit tail -n 8 --data-dir "$work/server"
echo
echo "demo done: server, agent and workload stopped, $work removed."
