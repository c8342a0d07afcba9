#!/usr/bin/env bash
# The trustmesh demo: a control plane, a node agent, and three services
# (frontend -> orders -> payments) each behind a trustmesh proxy, talking
# over mutual TLS with identities from the agent and config pushed live by
# the server.
#
#   scripts/demo.sh          run the scenario, then stay up until Ctrl-C
#   scripts/demo.sh --once   run the scenario and exit 0 on success
set -euo pipefail
cd "$(dirname "$0")/.."
once=false
[ "${1:-}" = "--once" ] && once=true
TM=${TM:-$PWD/bin/trustmesh}
BIN=${DEMO_BIN:-$PWD/bin}
TD=demo.trustmesh.dev
P=${DEMO_PORT_BASE:-18000}   # ports P+0 .. P+99 on 127.0.0.1
NODE=127.0.0.1:$((P+43)) ADMIN=127.0.0.1:$((P+44))
work=$(mktemp -d /tmp/trustmesh-demo.XXXXXX)
pids=()
keep_logs=false
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  $keep_logs || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok()   { printf '   \033[32mok\033[0m  %s\n' "$*"; }
# On failure every process is still stopped; only the logs are kept.
fail() { printf '   \033[31mFAILED\033[0m  %s\n' "$*" >&2; echo "logs in $work" >&2; keep_logs=true; exit 1; }
wait_for() { # wait_for CHECK-COMMAND WHAT
  for _ in $(seq 1 150); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: $2 did not come up; logs in $work:" >&2; tail -n 20 "$work"/*.log >&2; keep_logs=true; exit 1
}
bg() { # bg NAME CMD...: run in the background, logging to $work/NAME.log
  local name=$1; shift
  "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
}

say "building the example services"
go build -o "$BIN/" ./examples/frontend ./examples/orders ./examples/payments

say "starting the control plane (trust domain $TD)"
bg server "$TM" server --data-dir "$work/server" --trust-domain $TD --listen $NODE --admin-listen $ADMIN
wait_for "[ -e $work/server/admin/server ] && $TM admin whoami --data-dir $work/server" "the server"
ok "CA created; trust bundle at $work/server/bundle.pem"

say "declaring the mesh: three workloads, two services, mTLS STRICT"
{
cat <<YAML
apiVersion: trustmesh.dev/v1
kind: MeshConfig
metadata: {name: default}
spec: {defaultMTLSMode: STRICT, x509SVIDTTL: 10m}
YAML
for app in frontend orders payments; do cat <<YAML
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: $app, labels: {app: $app}}
spec:
  spiffeID: spiffe://$TD/ns/default/sa/$app
  parentID: spiffe://$TD/trustmesh/node/node-1
  selectors: ["unix:uid:$(id -u)"]
YAML
done
for svc in orders:$((P+2)) payments:$((P+3)); do cat <<YAML
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: ${svc%%:*}}
spec:
  ports: [{name: http, port: 80, protocol: HTTP, targetPort: ${svc##*:}}]
  selector: {matchLabels: {app: ${svc%%:*}}}
  spiffeIDs: ["spiffe://$TD/ns/default/sa/${svc%%:*}"]
YAML
done
} >"$work/mesh.yaml"
"$TM" apply -f "$work/mesh.yaml" --data-dir "$work/server" | sed 's/^/   /'

say "joining node-1 with a single-use token"
token=$("$TM" token create --node node-1 --ttl 5m --data-dir "$work/server" 2>/dev/null)
bg agent "$TM" agent --server $NODE --join-token "$token" --trust-bundle "$work/server/bundle.pem" \
  --socket "$work/agent.sock" --data-dir "$work/agent"
wait_for "[ -S $work/agent.sock ] && $TM cert fetch --socket $work/agent.sock" "the agent"
ok "the agent holds an SVID for each workload:"
"$TM" cert fetch --socket "$work/agent.sock" -o json | grep '"spiffeID"' | sed 's/^ */     /'

say "starting payments, orders and frontend, each behind its proxy"
# app ports P+1..P+3, inbound P+11..P+13, outbound P+22 (orders) P+23 (payments), admin P+31..P+33
bg payments "$BIN/payments" --listen 127.0.0.1:$((P+3))
bg orders   "$BIN/orders" --listen 127.0.0.1:$((P+2)) --payments-url http://127.0.0.1:$((P+23))
bg frontend "$BIN/frontend" --listen 127.0.0.1:$((P+1)) --orders-url http://127.0.0.1:$((P+22))
bg proxy-payments "$TM" proxy --socket "$work/agent.sock" --server $NODE --spiffe-id spiffe://$TD/ns/default/sa/payments \
  --inbound 127.0.0.1:$((P+13))=127.0.0.1:$((P+3)) --admin 127.0.0.1:$((P+33))
bg proxy-orders "$TM" proxy --socket "$work/agent.sock" --server $NODE --spiffe-id spiffe://$TD/ns/default/sa/orders \
  --inbound 127.0.0.1:$((P+12))=127.0.0.1:$((P+2)) --outbound 127.0.0.1:$((P+23))=payments:80 --admin 127.0.0.1:$((P+32)) \
  --access-log "$work/orders-access.log"
bg proxy-frontend "$TM" proxy --socket "$work/agent.sock" --server $NODE --spiffe-id spiffe://$TD/ns/default/sa/frontend \
  --inbound 127.0.0.1:$((P+11))=127.0.0.1:$((P+1)) --outbound 127.0.0.1:$((P+22))=orders:80 --admin 127.0.0.1:$((P+31))
for a in 31 32 33; do wait_for "curl -sf http://127.0.0.1:$((P+a))/ready" "proxy on admin port $((P+a))"; done
ok "three proxies ready (identity from the agent, config from the server)"
"$TM" get proxies --data-dir "$work/server" | sed 's/^/   /'

say "traffic: frontend -> orders -> payments over mutual TLS"
wait_for "curl -sf 'http://127.0.0.1:$((P+1))/buy?item=book&amount=12'" "a request through the mesh"
answer=$(curl -sf "http://127.0.0.1:$((P+1))/buy?item=book&amount=12")
echo "$answer" | sed 's/^/   /'
echo "$answer" | grep -q "spiffe://$TD/ns/default/sa/orders" || fail "payments did not see orders' identity"
echo "$answer" | grep -q "spiffe://$TD/ns/default/sa/frontend" || fail "orders did not see frontend's identity"
ok "each hop saw its caller's verified SPIFFE ID"

say "a plaintext client on a STRICT port is refused"
if curl -sf --max-time 3 "http://127.0.0.1:$((P+13))/pay" >/dev/null 2>&1; then fail "plaintext reached payments"; fi
ok "plaintext to payments' proxy refused: $(curl -s http://127.0.0.1:$((P+33))/metrics | grep -c 'trustmesh_plaintext_connections_total{.*refused' || true) refusal counter(s) on its /metrics"

say "authorization: least privilege as code, tested before it ships"
"$TM" policy validate -f examples/policies/policies.yaml | sed 's/^/   /'
"$TM" policy test -f examples/policies/policies.yaml --cases examples/policies/cases.yaml | sed 's/^/   /' || fail "policy tests failed"
"$TM" apply -f examples/policies/policies.yaml --data-dir "$work/server" | sed 's/^/   /'
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
wait_for "[ \"\$(code http://127.0.0.1:$((P+22))/orders)\" = 403 ]" "the policies in the proxies"
answer=$(curl -sf "http://127.0.0.1:$((P+1))/buy?item=pen&amount=3") || fail "the allowed path frontend -> orders -> payments was denied"
ok "frontend -> orders -> payments still allowed"
ok "GET /orders from frontend: $(code http://127.0.0.1:$((P+22))/orders) ($(curl -s -o /dev/null -D - http://127.0.0.1:$((P+22))/orders | tr -d '\r' | grep -i '^x-trustmesh-denied-by' | cut -d' ' -f2))"
ok "GET /orders/../admin from frontend: $(code --path-as-is http://127.0.0.1:$((P+22))/orders/../admin) (mesh-wide DENY on the normalized path)"
ok "why frontend may not call payments itself:"
"$TM" explain --from spiffe://$TD/ns/default/sa/frontend --to payments --method POST --path /pay --data-dir "$work/server" | sed -n '1p;/^why/,/^rules/p' | grep -v '^rules' | sed 's/^/     /'

say "denials are audited, and visible live with tap"
wait_for "$TM audit tail -n 50 --data-dir $work/server | grep -q authz.deny" "decision events in the audit log"
"$TM" audit tail -n 50 --data-dir "$work/server" | grep authz.deny | tail -n 2 | sed 's/^/   /'
"$TM" tap --denied --data-dir "$work/server" >"$work/tap.out" 2>&1 &
tap_pid=$!; pids+=($tap_pid)
wait_for "curl -s -o /dev/null http://127.0.0.1:$((P+22))/orders/tapped; grep -q /orders/tapped $work/tap.out" "a denied request in trustmesh tap"
kill "$tap_pid" 2>/dev/null || true
ok "trustmesh tap --denied saw it:"
grep /orders/tapped "$work/tap.out" | head -n 1 | sed 's/^/     /'

say "metrics and access logs say who called whom, and what was decided"
curl -s http://127.0.0.1:$((P+32))/metrics | grep '^trustmesh_requests_total{' | grep 'direction="inbound"' | grep -q 'decision="deny"' \
  || fail "orders' proxy /metrics has no denied inbound request"
curl -s http://127.0.0.1:$((P+32))/metrics | grep '^trustmesh_requests_total{' | grep 'direction="inbound"' | sed 's/^/   /' | head -n 3
wait_for "grep -q '\"decision\":\"deny\"' $work/orders-access.log" "an access-log line of a denied request"
ok "access log $work/orders-access.log, e.g.:"
grep '"decision":"deny"' "$work/orders-access.log" | head -n 1 | sed 's/^/     /'

say "a bad change, seen and rolled back in one command"
sed 's#sa/orders"\]#sa/ordres"]#' examples/policies/policies.yaml >"$work/typo.yaml"
"$TM" apply -f "$work/typo.yaml" --data-dir "$work/server" | grep payments | sed 's/^/   /'
wait_for "! curl -sf 'http://127.0.0.1:$((P+1))/buy?item=pen&amount=3'" "the bad change"
ok "with a typo in the payments policy, /buy fails"
"$TM" policy history payments --data-dir "$work/server" | sed 's/^/   /'
first=$("$TM" policy history payments --data-dir "$work/server" | awk 'NR==2 {print $1}')
"$TM" policy rollback payments --to "$first" --data-dir "$work/server" | sed 's/^/   /'
wait_for "curl -sf 'http://127.0.0.1:$((P+1))/buy?item=pen&amount=3'" "the rolled-back policy"
ok "rolled back: /buy works again"

say "the audit log recorded it all"
"$TM" audit tail -n 8 --data-dir "$work/server" | sed 's/^/   /'

if $once; then
  echo; echo "demo: all checks passed."
  exit 0
fi
cat <<TXT

The mesh is up. Try:
  curl 'http://127.0.0.1:$((P+1))/buy?item=pen&amount=3'         # through the mesh
  curl http://127.0.0.1:$((P+33))/config_dump                    # payments proxy's pushed config
  curl -s http://127.0.0.1:$((P+32))/metrics | grep trustmesh_   # orders proxy's metrics
  tail -f $work/orders-access.log                                # orders proxy's access log
  $TM get proxies --data-dir $work/server
  $TM explain --from spiffe://$TD/ns/default/sa/frontend --to orders --method GET --path /orders --data-dir $work/server
  $TM policy history payments --data-dir $work/server
  $TM tap --data-dir $work/server                                # live requests (Ctrl-C to stop)
  $TM cert revoke --spiffe-id spiffe://$TD/ns/default/sa/orders --data-dir $work/server
Logs: $work/*.log        Ctrl-C stops everything.
TXT
while sleep 3600; do :; done
