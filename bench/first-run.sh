#!/usr/bin/env bash
# bench/first-run.sh: one fortio comparison, direct vs through two trustmesh
# proxies (outbound -> mTLS -> inbound), at a fixed rate. Prints fortio's
# latency percentiles and each proxy's CPU seconds and peak RSS from /proc.
# The full side-by-side harness (HAProxy, max throughput, h2) builds on this.
#
#   BENCH_SECONDS=30 QPS=1000 CONNS=16 PAYLOAD=1024 bench/first-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${BENCH_SECONDS:-30} QPS=${QPS:-1000} CONNS=${CONNS:-16} PAYLOAD=${PAYLOAD:-1024}
FORTIO=${FORTIO:-$PWD/.tools/fortio-v1.66.5/fortio}
[ -x "$FORTIO" ] || GOBIN=$(dirname "$FORTIO") go install fortio.org/fortio@v1.66.5
go build -o bin/trustmesh ./cmd/trustmesh
TM=$PWD/bin/trustmesh TD=bench.trustmesh.dev P=${BENCH_PORT_BASE:-19000}
work=$(mktemp -d /tmp/trustmesh-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
bg() { local n=$1; shift; "$@" >"$work/$n.log" 2>&1 & pids+=($!); eval "pid_$n=$!"; }
wait_for() { for _ in $(seq 1 150); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "$2 did not come up" >&2; tail "$work"/*.log >&2; exit 1; }

bg echo "$FORTIO" server -http-port 127.0.0.1:$((P+1)) -grpc-port disabled -redirect-port disabled
bg server "$TM" server --data-dir "$work/server" --trust-domain $TD --listen 127.0.0.1:$((P+43)) --admin-listen 127.0.0.1:$((P+44)) --log-level warn
wait_for "$TM admin whoami --data-dir $work/server" "server"
"$TM" apply --data-dir "$work/server" -f - >/dev/null <<YAML
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: client, labels: {app: client}}
spec: {spiffeID: "spiffe://$TD/client", parentID: "spiffe://$TD/trustmesh/node/n1", selectors: ["unix:uid:$(id -u)"]}
---
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: echo, labels: {app: echo}}
spec: {spiffeID: "spiffe://$TD/echo", parentID: "spiffe://$TD/trustmesh/node/n1", selectors: ["unix:uid:$(id -u)"]}
---
apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: echo}
spec:
  ports: [{name: http, port: 80, protocol: HTTP, targetPort: $((P+1))}]
  selector: {matchLabels: {app: echo}}
  spiffeIDs: ["spiffe://$TD/echo"]
YAML
tok=$("$TM" token create --node n1 --data-dir "$work/server" 2>/dev/null)
bg agent "$TM" agent --server 127.0.0.1:$((P+43)) --join-token "$tok" --trust-bundle "$work/server/bundle.pem" --socket "$work/a.sock" --data-dir "$work/agent" --log-level warn
wait_for "[ -S $work/a.sock ]" agent
bg inbound "$TM" proxy --socket "$work/a.sock" --server 127.0.0.1:$((P+43)) --spiffe-id spiffe://$TD/echo --inbound 127.0.0.1:$((P+11))=127.0.0.1:$((P+1)) --admin 127.0.0.1:$((P+31)) --log-level warn
bg outbound "$TM" proxy --socket "$work/a.sock" --server 127.0.0.1:$((P+43)) --spiffe-id spiffe://$TD/client --outbound 127.0.0.1:$((P+21))=echo:80 --admin 127.0.0.1:$((P+32)) --log-level warn
wait_for "curl -sf http://127.0.0.1:$((P+31))/ready && curl -sf http://127.0.0.1:$((P+32))/ready" proxies
wait_for "curl -sf http://127.0.0.1:$((P+21))/echo" "traffic through the proxies"

cpu() { awk '{print $14+$15}' /proc/$1/stat; }
tck=$(getconf CLK_TCK)
run() { # run NAME URL
  local before_in before_out
  before_in=$(cpu "$pid_inbound"); before_out=$(cpu "$pid_outbound")
  "$FORTIO" load -quiet -qps "$QPS" -c "$CONNS" -t "${SECONDS_}s" -payload-size "$PAYLOAD" -json "$work/$1.json" "$2" >"$work/$1.txt" 2>&1
  local cin=$(( $(cpu "$pid_inbound") - before_in )) cout=$(( $(cpu "$pid_outbound") - before_out ))
  python3 - "$work/$1.json" "$1" "$cin" "$cout" "$tck" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); name = sys.argv[2]
p = {x["Percentile"]: x["Value"] * 1000 for x in d["DurationHistogram"]["Percentiles"]}
codes = d.get("RetCodes", {}); ok = codes.get("200", 0); total = d["DurationHistogram"]["Count"]
line = f"{name:9s} qps {d['ActualQPS']:8.1f}  p50 {p.get(50,0):6.3f} ms  p90 {p.get(90,0):6.3f} ms  p99 {p.get(99,0):6.3f} ms  p99.9 {p.get(99.9,0):6.3f} ms  errors {total-ok}"
if name != "direct":
    tck = int(sys.argv[5]); cin, cout = int(sys.argv[3]) / tck, int(sys.argv[4]) / tck
    line += f"  cpu inbound {cin:.2f}s outbound {cout:.2f}s ({(cin+cout)/max(total,1)*1e6:.0f} us/req)"
print(line)
PY
}
echo "fortio: ${QPS} qps, ${CONNS} connections, ${PAYLOAD} B payload, ${SECONDS_} s each; $(nproc) cores shared by load, proxies and echo"
run direct "http://127.0.0.1:$((P+1))/echo"
run trustmesh "http://127.0.0.1:$((P+21))/echo"
for n in inbound outbound; do eval "pid=\$pid_$n"; echo "$n proxy peak RSS: $(awk '/VmHWM/ {print $2" "$3}' /proc/$pid/status)"; done
echo "negotiated groups: $(curl -s http://127.0.0.1:$((P+32))/metrics | grep '^trustmesh_tls_handshakes_total' | tr '\n' ' ')"
