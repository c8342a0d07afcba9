#!/usr/bin/env bash
# bench/ha.sh: the highly available control plane's figures, on one machine,
# one run, with the same figures on SQLite measured in the same run:
#   1. config push convergence: two servers A and B on one throwaway
#      PostgreSQL database (same KEK, own data dirs and ports), N simulated
#      proxy streams spread round-robin over A and B (bench/convergence),
#      every change applied through B; from the apply's exit to each stream's
#      ACK, p50/p99 over all streams and per replica; then one server on
#      SQLite with all the streams on it.
#   2. object writes per second: the store benchmarks (BenchmarkPutObject*
#      of internal/store/sqlite and internal/store/postgres, the latter on
#      its own pgtest cluster), and through a real server: one apply of a
#      document of BENCH_WRITES distinct Services (created, then each one
#      changed), through B and through the SQLite server.
# Writes bench/results/STAMP-ha.md (and STAMP-ha.json, the raw figures).
#
#   bench/ha.sh                                    # make bench-ha
#   BENCH_STREAMS=100 BENCH_CHANGES=5 bench/ha.sh  # quick
#
# Knobs: BENCH_STREAMS (100,1000), BENCH_CHANGES (20), BENCH_WRITES (200),
# BENCH_PORT_BASE (19400), BENCH_PG_SYNCHRONOUS_COMMIT (on, PostgreSQL's
# default, for the servers' database), BENCH_GO_TIME (3s, -benchtime of the
# store benchmarks), BENCH_LOG_LEVEL (warn, of the servers), BENCH_RESULTS
# (bench/results), BENCH_KEEP_WORK (1: keep the temp dir with the servers',
# agents' and PostgreSQL's logs, whether the run fails or not).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STREAMS=${BENCH_STREAMS:-100,1000} CHANGES=${BENCH_CHANGES:-20} WRITES=${BENCH_WRITES:-200}
P=${BENCH_PORT_BASE:-19400} PG_SYNC=${BENCH_PG_SYNCHRONOUS_COMMIT:-on}
GO_TIME=${BENCH_GO_TIME:-3s} LOG_LEVEL=${BENCH_LOG_LEVEL:-warn}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
TD=ha.bench.trustmesh.dev
CLIENT_ID=spiffe://$TD/bench-conv
die() { echo "bench-ha: $*" >&2; exit 1; }
say() { echo "bench-ha: $*" >&2; }

# 1,000 streams are 1,000 connections in the load generator and about 500 in
# each replica (the servers inherit this shell's limit).
maxstreams=$(tr , '\n' <<<"$STREAMS" | sort -n | tail -n 1)
need=$((maxstreams * 2 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then ulimit -Hn "$need" 2>/dev/null || true; fi
  ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge "$need" ] || say "open files limited to $(ulimit -n), $need wanted: $maxstreams streams may fail"
fi

# --- what the run needs ---------------------------------------------------------
# PostgreSQL's server, as make test-deps installs it (off PATH on Debian).
"$ROOT/scripts/ensure-packages.sh" '/usr/lib/postgresql/*/bin/initdb:postgresql'
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin"
say "building bin/trustmesh and bench/convergence"
go build -o bin/trustmesh ./cmd/trustmesh
TM=$ROOT/bin/trustmesh
work=$(mktemp -d /tmp/trustmesh-bench-ha.XXXXXX)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
go build -o "$work/convergence" ./bench/convergence

# --- processes: every one started here is stopped on exit ------------------------
pids=()
pg_running=""
pg() { # pg CMD ARGS: a PostgreSQL command, as the postgres user under root (initdb refuses root)
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$pg_running" ]; then
    pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m fast -w -t 60 stop >/dev/null 2>&1 || pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${BENCH_KEEP_WORK:-}" ]; then say "kept $work (exit status $rc)"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bg() { local n=$1; shift; "$@" >"$work/$n.log" 2>&1 & pids+=($!); eval "pid_$n=$!"; }
forget() { local q rest=(); for q in "${pids[@]}"; do [ "$q" = "$1" ] || rest+=("$q"); done; pids=("${rest[@]}"); }
stop() { # stop NAME: end one process started with bg, wait for it, forget it
  local n=$1 p; eval "p=\$pid_$n"
  kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true
  forget "$p"
}
# run CMD...: CMD in the background, waited for, so that INT or TERM end the
# run at once (bash runs traps only between foreground commands).
run() { local p rc=0; "$@" & p=$!; pids+=("$p"); wait "$p" || rc=$?; forget "$p"; return "$rc"; }
logtail() { for f in "$@"; do [ -f "$work/$f.log" ] && { echo "--- tail of $f.log" >&2; tail -n 20 "$work/$f.log" >&2; }; done; }
wait_for() { # wait_for CMD WHAT LOG...: up to 30 s, then the tail of the named logs
  local cmd=$1 what=$2; shift 2
  for _ in $(seq 1 300); do eval "$cmd" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench-ha: $what did not come up (waited 30 s for: $cmd)" >&2; logtail "$@"; exit 1
}
ports=($((P+1)) $((P+2)) $((P+11)) $((P+12)) $((P+21)) $((P+22)))
for port in "${ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port is in use (ports ${ports[*]} must be free; set BENCH_PORT_BASE)"
  fi
done
A_NODE=127.0.0.1:$((P+1)) A_ADMIN=127.0.0.1:$((P+2))
B_NODE=127.0.0.1:$((P+11)) B_ADMIN=127.0.0.1:$((P+12))
S_NODE=127.0.0.1:$((P+21)) S_ADMIN=127.0.0.1:$((P+22))

# --- a throwaway PostgreSQL cluster: trust auth, 127.0.0.1 only, a free port -------
PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/pg"
[ "$(id -u)" -ne 0 ] || chown postgres: "$work/pg"
chmod 0755 "$work"
pg "$PGBIN/initdb" -D "$work/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log" >&2; die "initdb failed"; }
cat >>"$work/pg/data/postgresql.conf" <<CONF
# bench/ha.sh: a throwaway cluster.
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$work/pg'
max_connections = 200
synchronous_commit = $PG_SYNC
CONF
pg "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 start >/dev/null || { tail -n 20 "$work/pg/postgres.log" >&2; die "PostgreSQL did not start"; }
pg_running=1
pg "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres trustmesh
DSN="postgres://postgres@127.0.0.1:$PGPORT/trustmesh?sslmode=disable"
pg_version=$(pg "$PGBIN/postgres" --version)
say "PostgreSQL on 127.0.0.1:$PGPORT ($pg_version, synchronous_commit=$PG_SYNC)"

# --- two replicas on it, one agent given both ------------------------------------------
"$TM" kek generate --out "$work/kek" >/dev/null
bg A "$TM" server --store "$DSN" --kek-file "$work/kek" --trust-domain $TD --data-dir "$work/a" --listen $A_NODE --admin-listen $A_ADMIN --log-level "$LOG_LEVEL"
wait_for "$TM admin whoami --data-dir $work/a" "server A" A
bg B "$TM" server --store "$DSN" --kek-file "$work/kek" --trust-domain $TD --data-dir "$work/b" --listen $B_NODE --admin-listen $B_ADMIN --log-level "$LOG_LEVEL"
wait_for "$TM admin whoami --data-dir $work/b" "server B" B
cmp -s "$work/a/bundle.pem" "$work/b/bundle.pem" || die "A and B publish different trust bundles: they do not share one CA"

# The convergence client's identity, granted by the agent to this uid (as
# bench/run.sh registers its workloads).
cat >"$work/workload.yaml" <<YAML
apiVersion: trustmesh.dev/v1
kind: Workload
metadata: {name: bench-conv, labels: {app: bench-conv}}
spec: {spiffeID: "$CLIENT_ID", parentID: "spiffe://$TD/trustmesh/node/n1", selectors: ["unix:uid:$(id -u)"]}
YAML
# agent NAME SERVERS DATA_DIR: register node n1 through DATA_DIR's server and start an agent on SERVERS.
agent() {
  local n=$1 servers=$2 dir=$3 tok
  "$TM" apply --data-dir "$dir" -f "$work/workload.yaml" >/dev/null
  tok=$("$TM" token create --node n1 --data-dir "$dir" 2>/dev/null)
  bg "$n" "$TM" agent --server "$servers" --join-token "$tok" --trust-bundle "$dir/bundle.pem" --socket "$work/$n.sock" --data-dir "$work/$n" --log-level "$LOG_LEVEL"
  wait_for "[ -S $work/$n.sock ]" "agent $n" "$n"
}
agent agent_ha "$A_NODE,$B_NODE" "$work/a"

# conv NAME SERVERS PIDS APPLY_DIR AGENT: bench/convergence, JSON to NAME.json.
conv() {
  local n=$1 servers=$2 spids=$3 dir=$4 ag=$5
  say "convergence ($n): $STREAMS streams over $servers, $CHANGES changes each, applied through $dir"
  if ! run "$work/convergence" --server "$servers" --server-pid "$spids" --socket "$work/$ag.sock" --spiffe-id "$CLIENT_ID" \
      --streams "$STREAMS" --changes "$CHANGES" --apply-cmd "$TM apply --data-dir $dir -f -" \
      >"$work/$n.json" 2>"$work/$n.txt"; then
    tail -n 5 "$work/$n.txt" >&2
    die "convergence ($n) failed; see the servers' logs (BENCH_KEEP_WORK=1 keeps $work)"
  fi
  grep -v '^$' "$work/$n.txt" | sed 's/^/  /' >&2
}

# writes NAME DATA_DIR: one apply of WRITES distinct Services, created, then each changed.
writes() {
  local n=$1 dir=$2 round port t0 t1 want got
  for round in create update; do
    port=9000; [ "$round" = update ] && port=9001
    : >"$work/$n-$round.yaml"
    for i in $(seq 1 "$WRITES"); do
      printf -- '---\napiVersion: trustmesh.dev/v1\nkind: Service\nmetadata: {name: w-%d, namespace: bench-writes}\nspec:\n  ports: [{name: http, port: %d, protocol: HTTP, targetPort: 8080}]\n  selector: {matchLabels: {app: w-%d}}\n  spiffeIDs: ["spiffe://%s/w-%d"]\n' \
        "$i" "$port" "$i" "$TD" "$i" >>"$work/$n-$round.yaml"
    done
    t0=$(date +%s%N)
    "$TM" apply --data-dir "$dir" -f "$work/$n-$round.yaml" >"$work/$n-$round.out" || die "apply of $WRITES objects ($n, $round) failed"
    t1=$(date +%s%N)
    want=created; [ "$round" = update ] && want=configured
    got=$(grep -c "$want" "$work/$n-$round.out" || true)
    [ "$got" -eq "$WRITES" ] || die "apply ($n, $round): $got of $WRITES objects $want (see $work/$n-$round.out)"
    printf '%s\t%s\t%s\t%s\n' "$n" "$round" "$WRITES" "$(( (t1 - t0) / 1000 ))" >>"$work/writes.tsv"
    say "writes ($n, $round): $WRITES objects in $(( (t1 - t0) / 1000000 )) ms"
  done
}
: >"$work/writes.tsv"

# hwm PID: peak RSS in MiB since start (or the last clear_refs).
hwm() { awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
: >"$work/rss.tsv"

conv conv-pg "$A_NODE,$B_NODE" "$pid_A,$pid_B" "$work/b" agent_ha
writes pg "$work/b"
printf 'A\t%s\nB\t%s\n' "$(hwm "$pid_A")" "$(hwm "$pid_B")" >>"$work/rss.tsv"
stop agent_ha; stop A; stop B
pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m fast -w -t 60 stop >/dev/null && pg_running=""
cp "$work/pg/postgres.log" "$work/postgres.log"

# --- the same on one server with SQLite --------------------------------------------------
# The replicas and the database are stopped first: the machine's cores go to
# this server alone, as they went to the two replicas and PostgreSQL above.
bg S "$TM" server --trust-domain $TD --data-dir "$work/s" --listen $S_NODE --admin-listen $S_ADMIN --log-level "$LOG_LEVEL"
wait_for "$TM admin whoami --data-dir $work/s" "server S (SQLite)" S
agent agent_s "$S_NODE" "$work/s"
conv conv-sqlite "$S_NODE" "$pid_S" "$work/s" agent_s
writes sqlite "$work/s"
printf 'S\t%s\n' "$(hwm "$pid_S")" >>"$work/rss.tsv"
stop agent_s; stop S

# --- store benchmarks: object writes per second ----------------------------------------
say "store benchmarks: go test -bench PutObject (SQLite, PostgreSQL on pgtest's own cluster), -benchtime $GO_TIME"
run go test -run '^$' -bench 'PutObject' -benchtime "$GO_TIME" -count 1 ./internal/store/sqlite/ ./internal/store/postgres/ >"$work/store-bench.txt" 2>&1 \
  || { tail -n 20 "$work/store-bench.txt" >&2; die "store benchmarks failed"; }

# --- report ----------------------------------------------------------------------------
stamp=$(date -u +%Y-%m-%d-%H%M%S)
mkdir -p "$RESULTS"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit+=" (with uncommitted changes)"
export HA_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
export HA_MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || echo unknown)), $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo) RAM, Linux $(uname -r), $(df -PT "$work" | awk 'NR==2 {print $2}') file system for the data dirs and the cluster"
export HA_VERSIONS="trustmesh $("$TM" version 2>/dev/null | head -n 1) at $commit; $pg_version; $(go version | cut -d' ' -f3)"
export HA_STREAMS=$STREAMS HA_CHANGES=$CHANGES HA_WRITES=$WRITES HA_PG_SYNC=$PG_SYNC HA_GO_TIME=$GO_TIME HA_LOG_LEVEL=$LOG_LEVEL
export HA_NOFILE=$(ulimit -n)
export HA_LOAD="before the run $load_before, after it $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work" "$RESULTS/$stamp-ha" <<'PY'
import json, os, re, sys
from collections import Counter
work, out = sys.argv[1], sys.argv[2]
E = os.environ
pg = json.load(open(f"{work}/conv-pg.json"))
sq = json.load(open(f"{work}/conv-sqlite.json"))
names = {}  # address -> replica name
for r in pg["results"]:
    for i, rr in enumerate(r["replicas"]):
        names[rr["server"]] = "AB"[i] if i < 2 else str(i)

def f(v, d=1):
    return "–" if v is None else f"{v:.{d}f}"
def ratio(a, b):
    return "–" if not a or not b else f"{a / b:.2f}×"
def mem(m, k="after_changes"):
    return "–" if not m else f"{m[k]:.0f}"

L = []
L.append(f"# trustmesh HA control plane benchmark, {E['HA_DATE']}")
L.append("")
L.append(f"- machine: {E['HA_MACHINE']}; the load generator (bench/convergence), the servers, the agent and PostgreSQL share these cores, nothing is pinned")
L.append(f"- load average (1, 5, 15 min): {E['HA_LOAD']}; anything else running on the machine competes with the benchmark for its cores")
L.append(f"- versions: {E['HA_VERSIONS']}")
L.append(f"- PostgreSQL: a throwaway cluster on 127.0.0.1 (trust auth), synchronous_commit={E['HA_PG_SYNC']} for the servers' database; replicas A and B on it with one KEK and their own data dirs; one agent with --server A,B")
L.append(f"- SQLite: one server, its own data dir (trustmesh.db, WAL, synchronous=NORMAL), started after A, B and PostgreSQL were stopped")
L.append(f"- runs: streams {E['HA_STREAMS']}, {E['HA_CHANGES']} changes per stream count, {E['HA_WRITES']} objects per write run; open files limit {E['HA_NOFILE']}; server log level {E['HA_LOG_LEVEL']}")
L.append("")
L.append("## Config push convergence: a write through B to the ACK of every stream")
L.append("")
L.append("Each change is one Service (pushed to every proxy) whose port changes, applied with `trustmesh apply --data-dir B -f -` on PostgreSQL (so it reaches A's streams through LISTEN/NOTIFY) and through the only server on SQLite. ms from the apply command's exit (the write committed) to a stream's ACK of the snapshot with the change, over all (stream, change) pairs; \"last stream\": until the last stream of the row had it, over changes. The servers debounce changes by 100 ms, a floor of every figure. CPU: server ms per change; RSS/HWM: VmRSS after the changes and VmHWM (reset before each stream count) of the row's server(s), MiB.")
L.append("")
L.append("| store | streams | replica | its streams | ACK p50 | ACK p99 | ACK max | last stream p50 | last stream p99 | apply p50 | snapshots / expected | early | server CPU ms/change | RSS MiB | HWM MiB |")
L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def rows(store, d):
    for r in d["results"]:
        exp = r["streams"] * r["changes"]
        L.append(f"| {store} | {r['streams']} | all | {r['streams']} | {f(r['ack_ms']['p50'])} | {f(r['ack_ms']['p99'])} | {f(r['ack_ms'].get('max'))} | {f(r['all_streams_ms']['p50'])} | {f(r['all_streams_ms']['p99'])} | {f(r['apply_ms']['p50'])} | {r['snapshots_received']} / {exp} | {r['early_receipts']} | {f(r.get('server_cpu_ms_per_change'), 0)} | {mem(r.get('server_rss_mb'))} | {mem(r.get('server_hwm_mb'))} |")
        if len(r["replicas"]) > 1:
            for rr in r["replicas"]:
                via = " (writes)" if names.get(rr["server"]) == "B" else ""
                L.append(f"| {store} | {r['streams']} | {names.get(rr['server'], rr['server'])}{via} | {rr['streams']} | {f(rr['ack_ms']['p50'])} | {f(rr['ack_ms']['p99'])} | {f(rr['ack_ms'].get('max'))} | {f(rr['all_streams_ms']['p50'])} | {f(rr['all_streams_ms']['p99'])} | | {rr['snapshots_received']} / {rr['streams'] * r['changes']} | {rr['early_receipts']} | {f(rr.get('server_cpu_ms_per_change'), 0)} | {mem(rr.get('server_rss_mb'))} | {mem(rr.get('server_hwm_mb'))} |")
rows("PostgreSQL", pg)
rows("SQLite", sq)
L.append("")
L.append("PostgreSQL (two replicas) against SQLite (one server), same run:")
L.append("")
L.append("| streams | ACK p50 ×SQLite | ACK p99 ×SQLite | A p50 ×SQLite | A p99 ×SQLite | B p50 ×SQLite | B p99 ×SQLite | last stream p99 ×SQLite | apply p50 ×SQLite | A p50 − B p50 ms |")
L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
sqby = {r["streams"]: r for r in sq["results"]}
for r in pg["results"]:
    s = sqby.get(r["streams"])
    if not s:
        continue
    reps = {names.get(x["server"]): x for x in r["replicas"]}
    a, b = reps.get("A"), reps.get("B")
    cell = lambda x, k, p: ratio(x[k][p], s[k][p]) if x else "–"
    diff = f"{a['ack_ms']['p50'] - b['ack_ms']['p50']:+.1f}" if a and b else "–"
    L.append(f"| {r['streams']} | {cell(r, 'ack_ms', 'p50')} | {cell(r, 'ack_ms', 'p99')} | {cell(a, 'ack_ms', 'p50')} | {cell(a, 'ack_ms', 'p99')} | {cell(b, 'ack_ms', 'p50')} | {cell(b, 'ack_ms', 'p99')} | {ratio(r['all_streams_ms']['p99'], s['all_streams_ms']['p99'])} | {ratio(r['apply_ms']['p50'], s['apply_ms']['p50'])} | {diff} |")
L.append("")

# Object writes per second.
store = []  # (store, benchmark, setting, ns/op)
pkg = ""
for line in open(f"{work}/store-bench.txt"):
    if line.startswith("pkg: "):
        pkg = line.split()[1].rsplit("/", 1)[-1]
    m = re.match(r"^(BenchmarkPutObject\S*?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op", line)
    if m:
        name, ns = m.group(1), float(m.group(2))
        bench, _, setting = name.partition("/")
        store.append((pkg, bench.removeprefix("Benchmark"), setting, ns))
L.append("## Object writes per second")
L.append("")
L.append(f"Store level: `go test -run '^$' -bench PutObject -benchtime {E['HA_GO_TIME']} ./internal/store/sqlite/ ./internal/store/postgres/` (one Service object per op, 1,000 names rewritten in turn; Parallel: GOMAXPROCS={os.cpu_count()} writers; PostgreSQL on the pgtest harness's own cluster, with synchronous_commit off and on; SQLite in WAL with synchronous=NORMAL, which like synchronous_commit=off may lose the last commits in a crash but never corrupts).")
L.append("")
L.append("The Parallel benchmarks start their timer before their setup (no `b.ResetTimer()` before `b.RunParallel`): each round's database creation, migrations and store opening (a fresh PostgreSQL database, or a new SQLite file) is counted in its µs/op, so their writes/s are lower bounds, the PostgreSQL ones the more so; the serial ones (`b.Loop`) are not affected.")
L.append("")
L.append("| store | benchmark | setting | µs/op | writes/s | ×SQLite (same benchmark) |")
L.append("|---|---|---|---:|---:|---:|")
sqlite_ns = {b: ns for (p, b, st, ns) in store if p == "sqlite"}
for p, b, st, ns in store:
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(p, p)
    rel = "–" if p == "sqlite" else ratio(sqlite_ns.get(b), ns)
    L.append(f"| {label} | {b} | {st or '–'} | {ns / 1000:.1f} | {1e9 / ns:,.0f} | {rel} |")
L.append("")
w = {}
for line in open(f"{work}/writes.tsv"):
    n, rnd, cnt, us = line.split("\t")
    w[(n, rnd)] = (int(cnt), int(us))
L.append(f"Through a real server: one `trustmesh apply` of a document of {E['HA_WRITES']} distinct Services, all created, then each changed (each object: a read, a compare-and-swap write and an audit record, one after the other over the admin API; the command's start-up and mTLS handshake included). PostgreSQL through B with A up and notified; SQLite through its only server.")
L.append("")
L.append("| round | PostgreSQL (B) objects/s | SQLite objects/s | PostgreSQL ×SQLite |")
L.append("|---|---:|---:|---:|")
for rnd in ("create", "update"):
    p, s = w.get(("pg", rnd)), w.get(("sqlite", rnd))
    ps = p[0] / (p[1] / 1e6) if p else None
    ss = s[0] / (s[1] / 1e6) if s else None
    L.append(f"| {rnd} | {f(ps, 0)} | {f(ss, 0)} | {ratio(ps, ss)} |")
L.append("")

# Memory and logs.
L.append("## Servers")
L.append("")
rss = dict(line.rstrip("\n").split("\t") for line in open(f"{work}/rss.tsv"))
L.append(f"Peak RSS (VmHWM since the last stream count's reset, through the write runs): A {rss.get('A', '–')} MiB, B {rss.get('B', '–')} MiB, SQLite server {rss.get('S', '–')} MiB.")
L.append("")
logs = {"A": "A.log", "B": "B.log", "SQLite server": "S.log", "PostgreSQL": "postgres.log", "agent (HA)": "agent_ha.log", "agent (SQLite)": "agent_s.log"}
L.append("Log lines at warning level or above, by message (first 8 of each log):")
L.append("")
for who, fn in logs.items():
    path = f"{work}/{fn}"
    if not os.path.exists(path):
        continue
    c = Counter()
    for line in open(path, errors="replace"):
        if who == "PostgreSQL":
            m = re.search(r"\b(WARNING|ERROR|FATAL|PANIC):\s+(.*)", line)
            if m:
                c[f"{m.group(1)}: {re.sub(r'[0-9]+', 'N', m.group(2).strip())[:160]}"] += 1
            continue
        m = re.search(r"level=(WARN|ERROR)\b.*?msg=(\"[^\"]*\"|\S+)", line)
        if m:
            c[f"{m.group(1)} {m.group(2).strip(chr(34))}"] += 1
    if not c:
        L.append(f"- {who}: none")
    else:
        L.append(f"- {who}: " + "; ".join(f"{k} ×{v}" for k, v in c.most_common(8)))
L.append("")
L.append("## Notes")
L.append("")
seen = set()
for n in pg["notes"] + sq["notes"]:
    n = re.sub(r"--data-dir \S+", "--data-dir DIR", n)
    if n not in seen:
        seen.add(n)
        L.append(f"- {n}")
L.append("- Not measured: failover under load (test/e2e TestHighAvailability covers it), PostgreSQL on another machine (here the database is local, so no network round trip is in the write path), more than two replicas.")
open(out + ".md", "w").write("\n".join(L) + "\n")
json.dump({"convergence_postgres": pg, "convergence_sqlite": sq, "store_bench": [dict(store=p, bench=b, setting=st, ns_per_op=ns) for p, b, st, ns in store],
           "server_writes": [dict(run=k[0], round=k[1], objects=v[0], us=v[1]) for k, v in w.items()], "peak_rss_mib": rss},
          open(out + ".json", "w"), indent=2)
PY
cp "$work/store-bench.txt" "$RESULTS/$stamp-ha-store-bench.txt"
say "wrote $RESULTS/$stamp-ha.md and $RESULTS/$stamp-ha.json"
