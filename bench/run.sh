#!/usr/bin/env bash
# bench/run.sh: side-by-side data-plane benchmark on one machine, one run.
# The same fortio echo server is reached three ways:
#   direct     fortio -> echo
#   trustmesh  fortio -> outbound proxy -> mTLS -> inbound proxy -> echo,
#              with an AuthorizationPolicy of 10 ALLOW rules (one matching)
#              and a DENY on /admin/* enforced by the inbound proxy
#   haproxy    the same topology with two HAProxy processes doing TLS 1.3
#              mutual authentication with SVIDs issued by trustmesh's CA
# under four load shapes, and writes bench/results/STAMP.md and STAMP.json.
#
#   bench/run.sh                       # BENCH_SECONDS=30 per shape and configuration
#   BENCH_SECONDS=2 bench/run.sh       # smoke run (make bench-smoke)
#
# Knobs: BENCH_SECONDS (30), BENCH_WARMUP (1, seconds of unmeasured load before
# each measured run), BENCH_PORT_BASE (19100), BENCH_PROXY_THREADS (1:
# GOMAXPROCS of each trustmesh proxy and nbthread of each HAProxy),
# BENCH_PAYLOAD (1024), BENCH_SHAPES (a,b,c,d), BENCH_HAPROXY_H2 (1: run shape
# d through HAProxy too, h2c on its front), BENCH_FORTIO_ARGS (extra flags for
# every fortio load, e.g. -uniform), BENCH_RESULTS (bench/results),
# BENCH_KEEP_WORK (1: keep the temp dir with logs when the run fails).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${BENCH_SECONDS:-30} WARMUP=${BENCH_WARMUP:-1} P=${BENCH_PORT_BASE:-19100}
THREADS=${BENCH_PROXY_THREADS:-1} PAYLOAD=${BENCH_PAYLOAD:-1024}
SHAPES=${BENCH_SHAPES:-a,b,c,d} HAPROXY_H2=${BENCH_HAPROXY_H2:-1} FORTIO_ARGS=${BENCH_FORTIO_ARGS:-}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
FORTIO=${FORTIO:-$ROOT/.tools/fortio-v1.66.5/fortio}
TD=bench.trustmesh.dev
die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

# --- what the run needs, installed by the run -------------------------------
[ -x "$FORTIO" ] || { say "installing fortio v1.66.5 into $(dirname "$FORTIO")"; GOBIN=$(dirname "$FORTIO") go install fortio.org/fortio@v1.66.5; }
"$ROOT/scripts/ensure-packages.sh" haproxy:haproxy curl:curl
command -v haproxy >/dev/null || die "haproxy is not installed"
say "building bin/trustmesh, bench/svidfetch and bench/report"
go build -o bin/trustmesh ./cmd/trustmesh
work=$(mktemp -d /tmp/trustmesh-bench.XXXXXX)
go build -o "$work/svidfetch" ./bench/svidfetch
go build -o "$work/report" ./bench/report
go build -o "$work/convergence" ./bench/convergence
go build -o "$work/handshakes" ./bench/handshakes
TM=$ROOT/bin/trustmesh

# --- processes: every one started here is killed on exit --------------------
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" -ne 0 ] && [ -n "${BENCH_KEEP_WORK:-}" ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg() { local n=$1; shift; "$@" >"$work/$n.log" 2>&1 & pids+=($!); eval "pid_$n=$!"; }
logtail() { for f in "$@"; do [ -f "$work/$f.log" ] && { echo "--- tail of $f.log" >&2; tail -n 20 "$work/$f.log" >&2; }; done; }
# wait_for CMD WHAT LOG...: up to 15 s, then the tail of the named logs.
wait_for() {
  local cmd=$1 what=$2; shift 2
  for _ in $(seq 1 150); do eval "$cmd" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench: $what did not come up (waited 15 s for: $cmd)" >&2; logtail "$@"; exit 1
}
alive() { local n=$1; eval "local p=\$pid_$n"; kill -0 "$p" 2>/dev/null || { echo "bench: $n exited" >&2; logtail "$n"; exit 1; }; }

ports=($((P+1)) $((P+11)) $((P+21)) $((P+31)) $((P+32)) $((P+43)) $((P+44)) $((P+51)) $((P+52)))
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (ports ${ports[*]} must be free; set BENCH_PORT_BASE)"
  fi
done

# --- echo, control plane, agent ---------------------------------------------
bg echo "$FORTIO" server -http-port 127.0.0.1:$((P+1)) -grpc-port disabled -redirect-port disabled
wait_for "curl -sf http://127.0.0.1:$((P+1))/echo" "fortio echo server" echo
bg server "$TM" server --data-dir "$work/server" --trust-domain $TD --listen 127.0.0.1:$((P+43)) --admin-listen 127.0.0.1:$((P+44)) --log-level warn
wait_for "$TM admin whoami --data-dir $work/server" "trustmesh server" server

rules=""
for i in 1 2 3 4 5 6 7 8 9; do
  if [ $((i % 3)) -eq 0 ]; then # the client's principal, another path
    rules+="  - from: [{source: {principals: [\"spiffe://$TD/client\"]}}]
    to: [{operation: {methods: [\"GET\"], paths: [\"/other-$i/*\"]}}]
"
  else # another principal, the benchmark's path or another
    rules+="  - from: [{source: {principals: [\"spiffe://$TD/ns/other/sa/svc-$i\"]}}]
    to: [{operation: {paths: [\"/echo\", \"/svc-$i/*\"]}}]
"
  fi
done
cat >"$work/objects.yaml" <<YAML
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
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: bench-echo, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  rules:
$rules  - from: [{source: {principals: ["spiffe://$TD/client"]}}]
    to: [{operation: {methods: ["GET", "POST"], paths: ["/echo"]}}]
---
apiVersion: trustmesh.dev/v1
kind: AuthorizationPolicy
metadata: {name: bench-deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin", "/admin/*"]}}]
YAML
"$TM" policy validate -f "$work/objects.yaml" >/dev/null || die "the benchmark's objects do not validate ($work/objects.yaml)"
"$TM" apply --data-dir "$work/server" -f "$work/objects.yaml" >/dev/null
tok=$("$TM" token create --node n1 --data-dir "$work/server" 2>/dev/null)
bg agent "$TM" agent --server 127.0.0.1:$((P+43)) --join-token "$tok" --trust-bundle "$work/server/bundle.pem" --socket "$work/a.sock" --data-dir "$work/agent" --log-level warn
wait_for "[ -S $work/a.sock ]" "trustmesh agent" agent server

# --- trustmesh proxies --------------------------------------------------------
GOMAXPROCS=$THREADS bg inbound "$TM" proxy --socket "$work/a.sock" --server 127.0.0.1:$((P+43)) --spiffe-id spiffe://$TD/echo --inbound 127.0.0.1:$((P+11))=127.0.0.1:$((P+1)) --admin 127.0.0.1:$((P+31)) --log-level warn --pprof
GOMAXPROCS=$THREADS bg outbound "$TM" proxy --socket "$work/a.sock" --server 127.0.0.1:$((P+43)) --spiffe-id spiffe://$TD/client --outbound 127.0.0.1:$((P+21))=echo:80 --admin 127.0.0.1:$((P+32)) --log-level warn
wait_for "curl -sf http://127.0.0.1:$((P+31))/ready && curl -sf http://127.0.0.1:$((P+32))/ready" "trustmesh proxies" inbound outbound agent
wait_for "curl -sf http://127.0.0.1:$((P+31))/config_dump | grep -q bench-echo && curl -sf http://127.0.0.1:$((P+31))/config_dump | grep -q bench-deny-admin" "the policies in the inbound proxy" inbound
wait_for "curl -sf http://127.0.0.1:$((P+21))/echo" "traffic through the trustmesh proxies" inbound outbound
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(code http://127.0.0.1:$((P+21))/admin/x)" = 403 ] || die "trustmesh: /admin/x was not denied (403)"
[ "$(code http://127.0.0.1:$((P+21))/not-allowed)" = 403 ] || die "trustmesh: /not-allowed was not denied (403): the ALLOW policy is not in force"
[ "$(code -X POST --data-binary @"$work/objects.yaml" http://127.0.0.1:$((P+21))/echo)" = 200 ] || die "trustmesh: POST /echo was not allowed"

# --- HAProxy, with SVIDs from trustmesh's CA ----------------------------------
for id in client echo; do
  "$work/svidfetch" -socket "$work/a.sock" -spiffe-id "spiffe://$TD/$id" -write "$work/svid-$id" || { logtail agent; die "no SVID for $id"; }
done
cat >"$work/hap-common.cfg" <<CFG
global
  nbthread $THREADS
  maxconn 4096
  tune.ssl.default-dh-param 2048
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
CFG
cat "$work/hap-common.cfg" - >"$work/hap-out.cfg" <<CFG
frontend out
  # clear text: HTTP/1.1, and h2c (the HTTP/2 preface is detected)
  bind 127.0.0.1:$((P+51))
  default_backend mesh
backend mesh
  http-reuse always
  server in 127.0.0.1:$((P+52)) ssl crt $work/svid-client/haproxy.pem ca-file $work/svid-client/bundle.pem verify required ssl-min-ver TLSv1.3 alpn http/1.1
CFG
cat "$work/hap-common.cfg" - >"$work/hap-in.cfg" <<CFG
frontend in
  bind 127.0.0.1:$((P+52)) ssl crt $work/svid-echo/haproxy.pem ca-file $work/svid-echo/bundle.pem verify required ssl-min-ver TLSv1.3 alpn http/1.1
  http-request deny deny_status 403 if { path /admin } || { path_beg /admin/ }
  default_backend echo
backend echo
  http-reuse always
  server echo 127.0.0.1:$((P+1))
CFG
for n in hap-out hap-in; do
  haproxy -c -q -f "$work/$n.cfg" >"$work/$n-check.log" 2>&1 || { cat "$work/$n-check.log" >&2; die "HAProxy rejects $work/$n.cfg"; }
done
bg hapin haproxy -db -f "$work/hap-in.cfg"
bg hapout haproxy -db -f "$work/hap-out.cfg"
wait_for "curl -sf http://127.0.0.1:$((P+51))/echo" "traffic through HAProxy" hapin hapout
[ "$(code http://127.0.0.1:$((P+51))/admin/x)" = 403 ] || die "haproxy: /admin/x was not denied (403)"
if curl -s -o /dev/null --max-time 3 --cert "$work/svid-client/svid.pem" --key "$work/svid-client/key.pem" -k --tlsv1.2 --tls-max 1.2 https://127.0.0.1:$((P+52))/echo; then
  die "haproxy inbound accepted TLS 1.2"
fi
if [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 3 https://127.0.0.1:$((P+52))/echo || true)" = 200 ]; then
  die "haproxy inbound accepted a client without a certificate"
fi

hap_group=unknown
if command -v openssl >/dev/null; then
  hap_group=$(openssl s_client -connect 127.0.0.1:$((P+52)) -cert "$work/svid-client/svid.pem" -key "$work/svid-client/key.pem" \
    -CAfile "$work/svid-client/bundle.pem" </dev/null 2>/dev/null | sed -n 's/^\(Server \)\{0,1\}Temp Key: //p; s/^Negotiated TLS1.3 group: //p' | head -n 1)
  hap_group=${hap_group:-unknown}
fi

# --- load ---------------------------------------------------------------------
declare -A shape_desc shape_args
shape_desc[a]="1000 qps, 16 connections, ${PAYLOAD} B POST payload, HTTP/1.1"; shape_args[a]="-qps 1000 -c 16"
shape_desc[b]="1000 qps, 64 connections, ${PAYLOAD} B POST payload, HTTP/1.1"; shape_args[b]="-qps 1000 -c 64"
shape_desc[c]="max throughput (qps 0), 16 connections, ${PAYLOAD} B POST payload, HTTP/1.1"; shape_args[c]="-qps 0 -c 16"
shape_desc[d]="max throughput (qps 0), 16 connections, ${PAYLOAD} B POST payload, HTTP/2 (fortio -h2, h2c to the first hop)"; shape_args[d]="-qps 0 -c 16 -h2"
declare -A url=([direct]="http://127.0.0.1:$((P+1))/echo" [trustmesh]="http://127.0.0.1:$((P+21))/echo" [haproxy]="http://127.0.0.1:$((P+51))/echo")
declare -A procs=([direct]="" [trustmesh]="inbound outbound" [haproxy]="hapin hapout")
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
tck=$(getconf CLK_TCK)
runs=$work/runs.tsv; : >"$runs"
notes=()
fload() { # fload OUT_JSON SECONDS SHAPE URL
  # -r 0.00001: 10 µs histogram buckets (fortio's default of 1 ms would
  # interpolate sub-millisecond percentiles inside one bucket).
  # shellcheck disable=SC2086
  "$FORTIO" load -quiet -r 0.00001 -p 50,90,99,99.9 -payload-size "$PAYLOAD" -t "${2}s" ${shape_args[$3]} $FORTIO_ARGS -json "$1" "$4"
}
measure() { # measure SHAPE CONFIG
  local shape=$1 cfg=$2 n pid out=$work/$1-$2
  for n in ${procs[$cfg]}; do alive "$n"; done
  [ "$WARMUP" = 0 ] || fload "$out-warmup.json" "$WARMUP" "$shape" "${url[$cfg]}" >"$out-warmup.txt" 2>&1 || true
  declare -A before=()
  for n in ${procs[$cfg]}; do
    eval "pid=\$pid_$n"
    echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || notes+=("could not reset VmHWM of $n: peak RSS is since start")
    before[$n]=$(ticks "$pid")
  done
  if ! fload "$out.json" "$SECS" "$shape" "${url[$cfg]}" >"$out.txt" 2>&1 || [ ! -s "$out.json" ]; then
    echo "bench: fortio failed for $cfg, shape $shape:" >&2; tail -n 5 "$out.txt" >&2
    notes+=("$cfg, shape $shape: fortio failed: $(grep -v '^$' "$out.txt" | tail -n 1 | cut -c1-200)")
    [ -s "$out.json" ] || return 0
  fi
  local px=""
  for n in ${procs[$cfg]}; do
    eval "pid=\$pid_$n"
    px+="${px:+,}$n:$(( $(ticks "$pid") - ${before[$n]} )):$(hwm "$pid")"
  done
  printf '%s\t%s\t%s\t%s\n' "$cfg" "$shape" "$out.json" "$px" >>"$runs"
  say "$shape $cfg: $(grep -E '^All done' "$out.txt" || tail -n 1 "$out.txt")"
}
say "$(nproc) cores, shared by fortio, the proxies and the echo server; ${SECS} s per shape and configuration"
shape_flags=()
for shape in ${SHAPES//,/ }; do
  [ -n "${shape_args[$shape]:-}" ] || die "unknown shape $shape (a, b, c, d)"
  shape_flags+=(-shape "$shape=${shape_desc[$shape]}")
  for cfg in direct trustmesh haproxy; do
    if [ "$cfg" = haproxy ] && [ "$shape" = d ] && [ "$HAPROXY_H2" != 1 ]; then
      notes+=("haproxy, shape d: skipped (BENCH_HAPROXY_H2=$HAPROXY_H2)"); continue
    fi
    measure "$shape" "$cfg"
  done
done

# --- profile -------------------------------------------------------------------
# A CPU profile of the inbound trustmesh proxy under shape c's load (pprof on
# its admin port), so the report names where the proxy's time goes.
PROFILE=${BENCH_PROFILE:-1}
if [ "$PROFILE" = 1 ]; then
  psecs=$(( SECS < 10 ? SECS : 10 ))
  say "profiling the inbound proxy for ${psecs} s under max load (BENCH_PROFILE=0 to skip)"
  ( fload "$work/profile-load.json" "$((psecs + 2))" c "${url[trustmesh]}" >"$work/profile-load.txt" 2>&1 || true ) &
  loadpid=$!
  sleep 1
  if curl -sf -o "$work/inbound.pprof" "http://127.0.0.1:$((P+31))/debug/pprof/profile?seconds=$psecs"; then
    go tool pprof -top -nodecount 25 "$TM" "$work/inbound.pprof" >"$work/profile-flat.txt" 2>/dev/null || true
    go tool pprof -top -cum -nodecount 40 "$TM" "$work/inbound.pprof" >"$work/profile-cum.txt" 2>/dev/null || true
  else
    notes+=("profile: could not fetch /debug/pprof/profile from the inbound proxy")
  fi
  wait "$loadpid" || true
fi

# --- connection setup: new mTLS handshakes per second --------------------------
# No session reuse; against each inbound side (trustmesh proxy, HAProxy), with
# the hybrid post-quantum group and with X25519. HAProxy (OpenSSL 3.0) has no
# ML-KEM: its hybrid attempts fail, which the report shows as errors.
hsecs=$(( SECS < 10 ? SECS : 10 ))
say "mTLS handshakes per second without reuse, ${hsecs} s per server and group"
hs_note=""
for target in "trustmesh:$((P+11))" "haproxy:$((P+52))"; do
  name=${target%%:*} port=${target##*:}
  if "$work/handshakes" --addr 127.0.0.1:$port --cert "$work/svid-client/svid.pem" --key "$work/svid-client/key.pem" \
      --ca "$work/svid-client/bundle.pem" --seconds "$hsecs" --conns 8 --groups X25519MLKEM768,X25519 --alpn http/1.1 \
      >"$work/handshakes-$name.json" 2>"$work/handshakes-$name.txt"; then
    hs_note+="${hs_note:+; }$name: $(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(", ".join("%s %.0f/s (%d errors, p50 %.1f ms)" % (r["group"], r["handshakes_per_s"], r["errors"], r["p50_ms"]) for r in d["results"]))' "$work/handshakes-$name.json")"
  else
    notes+=("handshake benchmark against $name failed: $(tail -n 1 "$work/handshakes-$name.txt")")
  fi
done
[ -n "$hs_note" ] && notes+=("connection setup, new mTLS handshakes per second without reuse (8 concurrent clients, this run): $hs_note")

# --- control plane: config push convergence -----------------------------------
# N simulated proxy streams (one gRPC connection each) on the real server; a
# Service change is applied and timed until every stream has ACKed it.
STREAMS=${BENCH_STREAMS:-100,1000} CHANGES=${BENCH_CHANGES:-10}
if [ "$SECS" -le 5 ] && [ -z "${BENCH_STREAMS:-}" ]; then STREAMS=100 CHANGES=3; fi
say "config push convergence: $STREAMS simulated proxy streams, $CHANGES changes each"
if "$work/convergence" --server 127.0.0.1:$((P+43)) --socket "$work/a.sock" --spiffe-id "spiffe://$TD/client" \
    --streams "$STREAMS" --changes "$CHANGES" --apply-cmd "$TM apply --data-dir $work/server -f -" \
    --server-pid "$pid_server" >"$work/convergence.json" 2>"$work/convergence.txt"; then
  conv=$(python3 - "$work/convergence.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
parts = []
for r in d["results"]:
    p, a = r["propagation_ms"], r["all_streams_ms"]
    parts.append("%d streams: change to ACK p50 %.0f ms, p99 %.0f ms, last stream p99 %.0f ms, server RSS %.0f MiB" % (
        r["streams"], p["p50"], p["p99"], a["p99"], float(r["server_rss_mb"].get("after_changes", 0) if isinstance(r["server_rss_mb"], dict) else r["server_rss_mb"])))
print("; ".join(parts))
PY
)
  notes+=("control plane, config push convergence (bench/convergence, this run): $conv; the server debounces changes by 100 ms, which is the floor")
else
  notes+=("convergence benchmark failed: $(tail -n 1 "$work/convergence.txt")")
fi

# --- control plane: SVID issuance ------------------------------------------------
say "SVID issuance through a real server process (Go benchmark)"
if go test -run '^$' -bench 'BenchmarkSVIDIssuance' -benchtime "${BENCH_GO_TIME:-1s}" ./test/e2e/ >"$work/issuance.txt" 2>&1; then
  iss=$(awk '/^BenchmarkSVIDIssuance\// { for (i = 2; i < NF; i++) if ($(i+1) == "svids/s") { name = $1; sub(/^BenchmarkSVIDIssuance\//, "", name); sub(/-[0-9]+$/, "", name); printf "%s%s %s SVIDs/s", (n++ ? "; " : ""), name, $i } }' "$work/issuance.txt")
  notes+=("control plane, X.509-SVID issuance through a real server (gRPC mTLS, CSR check, signing, SQLite record): $iss")
else
  notes+=("issuance benchmark failed: $(tail -n 1 "$work/issuance.txt")")
fi

# --- policy engine -----------------------------------------------------------------
# The Go benchmarks of the authorization engine and of the same decisions in
# embedded OPA, at 10 to 10,000 rules (single-decision p50 from each).
say "policy engine vs OPA at 10 to 10,000 rules (Go benchmarks)"
if go test -run '^$' -bench 'BenchmarkEvaluate$|BenchmarkOPA$' -benchtime "${BENCH_GO_TIME:-1s}" ./internal/policy/authz/ >"$work/policy-bench.txt" 2>&1; then
  policy=$(awk '/^Benchmark(Evaluate|OPA)\/rules=/ {
      split($1, a, "[/=-]"); kind = a[1]; n = a[3]
      for (i = 2; i < NF; i++) if ($(i+1) == "p50-ns") p50[kind, n] = $i
      if (!(n in seen)) { seen[n] = 1; order[++m] = n } }
    END { for (i = 1; i <= m; i++) { n = order[i]; e = p50["BenchmarkEvaluate", n]; o = p50["BenchmarkOPA", n]
        printf "%s%s rules: %s ns vs OPA %s ns (%.0fx)", (i > 1 ? "; " : ""), n, e, o, (e > 0 ? o / e : 0) } }' "$work/policy-bench.txt")
  notes+=("policy engine, p50 of one decision (Go benchmarks, this run): $policy")
  cp "$work/policy-bench.txt" "$work/policy-bench.keep"
else
  notes+=("policy engine benchmarks failed: $(tail -n 1 "$work/policy-bench.txt")")
fi

# --- report -------------------------------------------------------------------
groups=$(curl -s http://127.0.0.1:$((P+32))/metrics | grep '^trustmesh_tls_handshakes_total' | tr '\n' ' ' || true)
stamp=$(date -u +%Y-%m-%d-%H%M%S)
mkdir -p "$RESULTS"
[ -s "$work/policy-bench.keep" ] && cp "$work/policy-bench.keep" "$RESULTS/$stamp-policy-bench.txt"
[ -s "$work/convergence.json" ] && cp "$work/convergence.json" "$RESULTS/$stamp-convergence.json"
if [ -s "$work/profile-flat.txt" ]; then
  { echo "CPU profile of the inbound trustmesh proxy under shape c (max throughput, 16 connections), $psecs s"; echo
    echo "== flat"; cat "$work/profile-flat.txt"; echo; echo "== cumulative"; cat "$work/profile-cum.txt"; } >"$RESULTS/$stamp-profile.txt"
  top3=$(sed -n '/flat%/,$p' "$work/profile-flat.txt" | sed -n '2,4p' | awk '{printf "%s%s %s", (NR>1?"; ":""), $6, $2}')
  notes+=("profile of the inbound proxy under max load: top flat entries $top3 (full listing: $stamp-profile.txt)")
fi
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit+=" (with uncommitted changes)"
"$work/report" -runs "$runs" -out "$RESULTS/$stamp" -clk-tck "$tck" \
  -meta "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC')" \
  -meta "machine=$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || echo unknown)), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r); fortio (load and echo), both proxies of a configuration and the echo server share these cores, nothing is pinned" \
  -meta "seconds per shape and configuration=$SECS (after ${WARMUP} s of unmeasured warm-up)" \
  -meta "proxy threads=GOMAXPROCS=$THREADS for each trustmesh proxy, nbthread $THREADS for each HAProxy" \
  -meta "versions=trustmesh $("$TM" version 2>/dev/null | head -n 1) at $commit; $(haproxy -v | head -n 1 | cut -d' ' -f1-3); fortio $("$FORTIO" version 2>/dev/null | head -n 1); $(go version | cut -d' ' -f3)" \
  -meta "trustmesh=outbound proxy -> mTLS (TLS 1.3, SVIDs, HTTP/1.1 between proxies) -> inbound proxy -> echo; policies bench-echo (10 ALLOW rules, the last matches spiffe://$TD/client on /echo) and bench-deny-admin (DENY /admin, /admin/*); checked before the load: /echo 200, /admin/x 403, /not-allowed 403; handshakes by group: ${groups:-unknown}" \
  -meta "haproxy=two processes, TLS 1.3 only (ssl-min-ver TLSv1.3), client certificate required (verify required) and server certificate verified against trustmesh's bundle, SVIDs of spiffe://$TD/client and spiffe://$TD/echo, alpn http/1.1 between them, http-reuse always on both backends, keep-alive, DENY /admin and /admin/* (no principal check: HAProxy only checks that the peer's chain leads to the bundle)" \
  "${shape_flags[@]}" \
  "${notes[@]/#/-note=}" \
  -note "Percentiles are fortio's, interpolated in its histogram (-r 0.00001): buckets 10 µs wide up to 0.11 ms, at most 100 µs up to 1 ms, 200 µs up to 2 ms, 0.5 ms up to 5 ms, 1 ms up to 10 ms and 10 ms up to 20 ms, so tail figures above 2 ms are coarse; ratios and differences are computed from the same run's direct and HAProxy rows." \
  -note "fortio starts its connections' requests together (no -uniform), so at a fixed rate over 64 connections requests arrive in bursts, which is what raises every configuration's latency in shape b. Extra fortio flags: BENCH_FORTIO_ARGS${FORTIO_ARGS:+ (this run: $FORTIO_ARGS)}." \
  -note "TLS key exchange: trustmesh's handshakes by group are in the header (from the outbound proxy's /metrics, whole run); HAProxy inbound, as openssl s_client saw it: $hap_group. With keep-alive both open about one connection per fortio connection, so the key exchange hardly weighs on these figures." \
  -note "Not done: CPU pinning of load generator, proxies and echo (they share the cores; the figures say so)."
say "wrote $RESULTS/$stamp.md and $RESULTS/$stamp.json"
