// Command convergence measures how fast the control plane pushes a change to
// many connected proxies. It opens N ConfigSync streams to a running server
// with one X.509-SVID from the agent (each stream a proxy: its own
// grpc.ClientConn, its own proxy_id, Hello, then an ACK for every snapshot,
// as internal/configsync.Client does), then changes a Service one write at a
// time with --apply-cmd and times, for every stream, the arrival of the
// snapshot that carries the change and the ACK sent for it.
//
//	go run ./bench/convergence --server 127.0.0.1:19143 --socket AGENT_SOCK \
//	  --spiffe-id spiffe://TD/bench --streams 100,1000 --changes 20 \
//	  --apply-cmd "bin/trustmesh apply --data-dir DIR -f -" --server-pid PID
//
// --server may list several replicas of a highly available control plane
// (--server A,B --server-pid PID_A,PID_B): stream i connects to address
// i % len, and every figure is reported over all streams and per replica.
//
// One JSON object goes to stdout, a table to stderr.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
)

func main() {
	if err := parseAndRun(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "convergence:", err)
		os.Exit(1) //nolint:forbidigo // this is main
	}
}

type options struct {
	socket, spiffeID, applyCmd string
	namespace, service         string
	// servers are the addresses the streams are spread over, round-robin;
	// serverPIDs is empty or holds the pid of each.
	servers               []string
	serverPIDs            []int
	streams               []int
	changes, dialParallel int
	timeout               time.Duration
}

func parseAndRun(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("convergence", flag.ContinueOnError)
	var o options
	servers := fs.String("server", "", "the server's gRPC address, or a comma-separated list of replicas to spread the streams over round-robin (required)")
	fs.StringVar(&o.socket, "socket", "/tmp/trustmesh/agent.sock", "the agent's Workload API socket")
	fs.StringVar(&o.spiffeID, "spiffe-id", "", "the identity the streams present (required; the agent must grant it to this process)")
	streams := fs.String("streams", "100,1000", "comma-separated stream counts, one run each")
	fs.IntVar(&o.changes, "changes", 20, "object changes per run, one at a time")
	fs.StringVar(&o.applyCmd, "apply-cmd", "", `command (run with sh -c) that applies the YAML on its stdin, e.g. "bin/trustmesh apply --data-dir DIR -f -" (required)`)
	serverPIDs := fs.String("server-pid", "", "the server's pid, for its CPU and memory from /proc; with several --server addresses, one pid per address, in the same order (empty or 0: not measured)")
	fs.StringVar(&o.namespace, "namespace", "default", "namespace of the Service that is changed")
	fs.StringVar(&o.service, "service", "bench-conv", "name of the Service that is changed")
	fs.IntVar(&o.dialParallel, "dial-parallel", 100, "streams connecting at the same time while a run opens its streams")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "give up when the streams have not all connected, or a change has not reached them all, within this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *servers == "" || o.spiffeID == "" || o.applyCmd == "" {
		return errors.New("--server, --spiffe-id and --apply-cmd are required")
	}
	for a := range strings.SplitSeq(*servers, ",") {
		if a = strings.TrimSpace(a); a == "" {
			return fmt.Errorf("--server %q: an address is empty", *servers)
		}
		o.servers = append(o.servers, a)
	}
	if p := strings.TrimSpace(*serverPIDs); p != "" && p != "0" {
		for f := range strings.SplitSeq(p, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid < 1 {
				return fmt.Errorf("--server-pid: %q is not a pid", f)
			}
			o.serverPIDs = append(o.serverPIDs, pid)
		}
		if len(o.serverPIDs) != len(o.servers) {
			return fmt.Errorf("--server-pid: %d pid(s) for %d --server address(es); give one per address, in the same order", len(o.serverPIDs), len(o.servers))
		}
	}
	for f := range strings.SplitSeq(*streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--streams: %q is not a positive count", f)
		}
		o.streams = append(o.streams, n)
	}
	if o.changes < 1 || o.dialParallel < 1 {
		return errors.New("--changes and --dial-parallel must be at least 1")
	}
	return run(o, stdout, stderr)
}

// report is the JSON printed to stdout.
type report struct {
	Results []result `json:"results"`
	Notes   []string `json:"notes"`
}

type result struct {
	Streams int `json:"streams"`
	Changes int `json:"changes"`
	// ConnectMS: from the first dial until every stream had ACKed its
	// first snapshot.
	ConnectMS float64 `json:"connect_all_ms"`
	// SnapshotBytes is the encoded size of a first snapshot.
	SnapshotBytes int `json:"snapshot_bytes"`
	// ApplyMS is the apply command's own duration (process start to exit).
	ApplyMS pcts `json:"apply_ms"`
	// PropagationMS: from the apply command's exit (t0) to a stream's
	// receipt of the snapshot with the change, over all streams and changes.
	PropagationMS pcts `json:"propagation_ms"`
	// AckMS: from t0 to the stream's ACK of that snapshot being sent.
	AckMS pcts `json:"ack_ms"`
	// EndToEndMS: from the apply command's start to the receipt.
	EndToEndMS pcts `json:"end_to_end_ms"`
	// AllStreamsMS: from t0 until the last stream had the change, over
	// changes.
	AllStreamsMS pcts `json:"all_streams_ms"`
	// EarlyReceipts counts receipts before t0 (the push raced the apply
	// command's exit); they count as negative propagation.
	EarlyReceipts int `json:"early_receipts"`
	// SnapshotsReceived is every snapshot the streams got during the
	// changes; Changes*Streams means no extra pushes.
	SnapshotsReceived int64 `json:"snapshots_received"`
	// ServerCPUMS and BenchCPUMS are the CPU time (user+system) the server
	// and this program spent per change, during the changes. With several
	// replicas the server figures (CPU, RSS, HWM) are their sum; each
	// one's are in Replicas.
	ServerCPUMS float64  `json:"server_cpu_ms_per_change,omitempty"`
	BenchCPUMS  float64  `json:"bench_cpu_ms_per_change"`
	ServerRSSMB *memPair `json:"server_rss_mb,omitempty"`
	ServerHWMMB *memPair `json:"server_hwm_mb,omitempty"`
	// Servers are the addresses the streams were spread over: stream i
	// used Servers[i % len(Servers)].
	Servers []string `json:"servers"`
	// Replicas holds the figures of each address's streams, in the order
	// of Servers (one entry with a single address).
	Replicas []replicaResult `json:"replicas"`
}

// replicaResult is the part of a result measured on one address's streams;
// the fields mean what result's of the same name do.
type replicaResult struct {
	Server            string   `json:"server"`
	Streams           int      `json:"streams"`
	PropagationMS     pcts     `json:"propagation_ms"`
	AckMS             pcts     `json:"ack_ms"`
	AllStreamsMS      pcts     `json:"all_streams_ms"`
	EarlyReceipts     int      `json:"early_receipts"`
	SnapshotsReceived int64    `json:"snapshots_received"`
	ServerPID         int      `json:"server_pid,omitempty"`
	ServerCPUMS       float64  `json:"server_cpu_ms_per_change,omitempty"`
	ServerRSSMB       *memPair `json:"server_rss_mb,omitempty"`
	ServerHWMMB       *memPair `json:"server_hwm_mb,omitempty"`
}

type pcts struct {
	P50 float64  `json:"p50"`
	P99 float64  `json:"p99"`
	Max *float64 `json:"max,omitempty"`
}

type memPair struct {
	Connected    float64 `json:"connected"`
	AfterChanges float64 `json:"after_changes"`
}

func run(o options, stdout, stderr io.Writer) error {
	var notes []string
	notes = append(notes, fmt.Sprintf("the load generator (this program, %d streams' TLS and protobuf work) shares the machine's %d cores with the server and the agent; nothing is pinned", slices.Max(o.streams), runtime.NumCPU()))
	if n, err := raiseNofile(); err != nil {
		notes = append(notes, "could not raise RLIMIT_NOFILE: "+err.Error())
	} else {
		notes = append(notes, fmt.Sprintf("RLIMIT_NOFILE raised to %d", n))
	}
	want, err := spiffeid.FromString(o.spiffeID)
	if err != nil {
		return fmt.Errorf("--spiffe-id: %w", err)
	}
	ctx := context.Background()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	src, err := workloadapi.NewX509Source(sctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+o.socket)),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return nil // never another identity
		}))
	cancel()
	if err != nil {
		return fmt.Errorf("SVID of %s from %s: %w", want, o.socket, err)
	}
	defer src.Close()
	if _, err := src.GetX509SVID(); err != nil {
		return fmt.Errorf("the agent does not grant %s to this process: %w", want, err)
	}
	serverID, err := spiffeid.FromPath(want.TrustDomain(), "/trustmesh/server")
	if err != nil {
		return err
	}
	tlsConf := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(serverID))
	tlsConf.MinVersion = tls.VersionTLS13
	b := &bench{o: o, tlsConf: tlsConf, port: 20000, td: want.TrustDomain().String(), id: want.String()}
	notes = append(notes,
		"one grpc.ClientConn (one TCP connection, one TLS 1.3 handshake) per stream, as a real proxy has; all streams present the same SVID ("+want.String()+") with distinct proxy_ids, mode \"bench\", no inbound listeners",
		fmt.Sprintf("each change is one Service (%s/%s, pushed to every proxy) whose port changes, applied with: %s; t0 is the apply command's exit, when the write is committed", o.namespace, o.service, o.applyCmd),
		"a receipt counts when a stream's snapshot contains the Service with the new port; the ACK is Ack{version} sent right after, as internal/configsync.Client does (without its apply work)",
		"the server debounces changes (100 ms by default) before recomputing, so about 100 ms is a floor of propagation; receipts before t0 (push racing the apply command's exit) are counted as early_receipts",
		"server_cpu_ms_per_change (from /proc/PID/stat, 10 ms ticks) and bench_cpu_ms_per_change (getrusage) are CPU time spent during the changes divided by their number; the apply command's own CPU (a child process) is in neither",
		"percentiles are nearest-rank over all (stream, change) receipts; all_streams_ms over changes",
	)
	if len(o.serverPIDs) != 0 {
		notes = append(notes, "server memory from /proc/PID/status: VmRSS and VmHWM after the streams connected and after the changes; VmHWM is reset (clear_refs 5) before each run when allowed")
	}
	if len(o.servers) > 1 {
		notes = append(notes, fmt.Sprintf("streams spread round-robin over %d replicas (stream i on address i %% %d: %s); every change is applied with the command above, whichever replica it goes through; figures over all streams, and per replica under replicas; server CPU and memory at the top level are the replicas' sum", len(o.servers), len(o.servers), strings.Join(o.servers, ", ")))
	}
	var rep report
	for _, n := range o.streams {
		r, extra, err := b.runN(ctx, n)
		notes = append(notes, extra...)
		if err != nil {
			return fmt.Errorf("%d streams: %w", n, err)
		}
		rep.Results = append(rep.Results, r)
	}
	rep.Notes = notes
	printTable(stderr, rep)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

type bench struct {
	o       options
	tlsConf *tls.Config
	port    uint32 // the Service's current port
	td, id  string
}

// raiseNofile sets the soft open-file limit to the hard one.
func raiseNofile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

func (b *bench) serviceYAML(port uint32) []byte {
	return fmt.Appendf(nil, `apiVersion: trustmesh.dev/v1
kind: Service
metadata: {name: %s, namespace: %s}
spec:
  ports: [{name: http, port: %d, protocol: HTTP, targetPort: 8080}]
  selector: {matchLabels: {app: %s}}
  spiffeIDs: [%q]
`, b.o.service, b.o.namespace, port, b.o.service, b.id)
}

// apply runs the apply command and returns its start and end.
func (b *bench) apply(ctx context.Context, port uint32) (time.Time, time.Time, error) {
	cmd := exec.CommandContext(ctx, "sh", "-c", b.o.applyCmd) //nolint:gosec // the operator's command is the point
	cmd.Stdin = bytes.NewReader(b.serviceYAML(port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	end := time.Now()
	if err != nil {
		return start, end, fmt.Errorf("apply command: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return start, end, nil
}

// stream is one simulated proxy.
type stream struct {
	idx     int
	replica int // index in options.servers of the address it uses
	conn    *grpc.ClientConn
}

// tracker collects, for the change in flight, when each stream received
// and ACKed it.
type tracker struct {
	mu       sync.Mutex
	want     uint32 // the port being waited for (0: first snapshot)
	first    bool   // waiting for any first snapshot
	recv     []time.Time
	ack      []time.Time
	pending  int
	done     chan struct{}
	received []int64 // snapshots received, per replica
	snapSize int
	errs     []error
}

func (t *tracker) arm(n int, want uint32, first bool) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.want, t.first = want, first
	t.recv, t.ack = make([]time.Time, n), make([]time.Time, n)
	t.pending, t.done = n, make(chan struct{})
	return t.done
}

func (t *tracker) observe(idx, replica int, port uint32, size int, recv, ack time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.received[replica]++
	if t.done == nil || !t.recv[idx].IsZero() || (!t.first && port != t.want) {
		return
	}
	if t.first && t.snapSize == 0 {
		t.snapSize = size
	}
	t.recv[idx], t.ack[idx] = recv, ack
	t.pending--
	if t.pending == 0 {
		close(t.done)
	}
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs = append(t.errs, err)
}

func (t *tracker) firstErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d stream(s) failed, first: %w", len(t.errs), t.errs[0])
}

// status says how many streams are still waited for, and the first error.
func (t *tracker) status() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	msg := fmt.Sprintf("%d stream(s) still waiting", t.pending)
	if len(t.errs) > 0 {
		msg += fmt.Sprintf("; %d failed, first: %v", len(t.errs), t.errs[0])
	}
	return msg
}

func (b *bench) servicePort(s *configsyncv1.Snapshot) uint32 {
	for _, svc := range s.GetServices() {
		if svc.GetName() == b.o.service && svc.GetNamespace() == b.o.namespace && len(svc.GetPorts()) > 0 {
			return svc.GetPorts()[0].GetPort()
		}
	}
	return 0
}

// proxy runs one stream until ctx ends: Hello, then ACK every snapshot.
func (b *bench) proxy(ctx context.Context, s *stream, run string, t *tracker, started chan<- struct{}) {
	sent := false
	signal := func() {
		if !sent {
			sent = true
			started <- struct{}{}
		}
	}
	defer signal()
	client := configsyncv1.NewConfigSyncClient(s.conn)
	st, err := client.Stream(ctx)
	if err != nil {
		t.fail(err)
		return
	}
	hello := &configsyncv1.Hello{ProxyId: fmt.Sprintf("bench-conv/%s/%d", run, s.idx), Mode: "bench", Version: "bench"}
	if err := st.Send(&configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Hello{Hello: hello}}); err != nil {
		t.fail(err)
		return
	}
	for {
		snap, err := st.Recv()
		if err != nil {
			if ctx.Err() == nil {
				t.fail(err)
			}
			return
		}
		recv := time.Now()
		signal() // connected: the next stream may dial
		ack := &configsyncv1.ProxyMessage{Msg: &configsyncv1.ProxyMessage_Ack{Ack: &configsyncv1.Ack{Version: snap.GetVersion()}}}
		if err := st.Send(ack); err != nil {
			if ctx.Err() == nil {
				t.fail(err)
			}
			return
		}
		t.observe(s.idx, s.replica, b.servicePort(snap), proto.Size(snap), recv, time.Now())
	}
}

func (b *bench) runN(ctx context.Context, n int) (result, []string, error) {
	nrep := len(b.o.servers)
	r := result{Streams: n, Changes: b.o.changes, Servers: b.o.servers}
	var notes []string
	// A known starting point, before any stream connects.
	b.port++
	if _, _, err := b.apply(ctx, b.port); err != nil {
		return r, notes, err
	}
	for _, pid := range b.o.serverPIDs {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0o600); err != nil {
			notes = append(notes, fmt.Sprintf("%d streams: could not reset the VmHWM of server pid %d (%v): its peak is since it started", n, pid, err))
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &tracker{received: make([]int64, nrep)}
	streams := make([]*stream, n)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for _, s := range streams {
			if s != nil {
				s.conn.Close()
			}
		}
	}()
	firstDone := t.arm(n, 0, true)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	started := make(chan struct{}, n)
	begin := time.Now()
	inflight := 0
	for i := range n {
		rep := i % nrep
		conn, err := grpc.NewClient(b.o.servers[rep],
			grpc.WithTransportCredentials(credentials.NewTLS(b.tlsConf)),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}))
		if err != nil {
			return r, notes, err
		}
		streams[i] = &stream{idx: i, replica: rep, conn: conn}
		if inflight == b.o.dialParallel {
			<-started
			inflight--
		}
		inflight++
		s := streams[i]
		wg.Go(func() { b.proxy(ctx, s, run, t, started) })
	}
	select {
	case <-firstDone:
	case <-time.After(b.o.timeout):
		return r, notes, fmt.Errorf("not every stream had its first snapshot within %s (%s)", b.o.timeout, t.status())
	}
	r.ConnectMS = ms(time.Since(begin))
	if err := t.firstErr(); err != nil {
		return r, notes, err
	}
	t.mu.Lock()
	r.SnapshotBytes = t.snapSize
	t.mu.Unlock()
	// Let the servers absorb the ACKs (each first ACK marks it dirty).
	time.Sleep(500 * time.Millisecond)
	mem0, memErr := b.memory()

	t.mu.Lock()
	clear(t.received)
	t.mu.Unlock()
	// Samples over all streams, and per replica.
	type samples struct{ prop, ackd, all []float64 }
	var apply, e2e []float64
	var total samples
	per := make([]samples, nrep)
	early := make([]int, nrep)
	srvCPU0, srvErr := b.serverCPU()
	selfCPU0 := selfCPU()
	for range b.o.changes {
		b.port++
		done := t.arm(n, b.port, false)
		start, t0, err := b.apply(ctx, b.port)
		if err != nil {
			return r, notes, err
		}
		apply = append(apply, ms(t0.Sub(start)))
		select {
		case <-done:
		case <-time.After(b.o.timeout):
			return r, notes, fmt.Errorf("port %d had not reached every stream within %s (%s)", b.port, b.o.timeout, t.status())
		}
		t.mu.Lock()
		var last time.Time
		lastBy := make([]time.Time, nrep)
		for i, s := range streams {
			rv, rep := t.recv[i], s.replica
			if rv.Before(t0) {
				r.EarlyReceipts++
				early[rep]++
			}
			p, a := ms(rv.Sub(t0)), ms(t.ack[i].Sub(t0))
			total.prop, total.ackd = append(total.prop, p), append(total.ackd, a)
			per[rep].prop, per[rep].ackd = append(per[rep].prop, p), append(per[rep].ackd, a)
			e2e = append(e2e, ms(rv.Sub(start)))
			if rv.After(last) {
				last = rv
			}
			if rv.After(lastBy[rep]) {
				lastBy[rep] = rv
			}
		}
		t.mu.Unlock()
		total.all = append(total.all, ms(last.Sub(t0)))
		for rep := range nrep {
			if !lastBy[rep].IsZero() {
				per[rep].all = append(per[rep].all, ms(lastBy[rep].Sub(t0)))
			}
		}
		if err := t.firstErr(); err != nil {
			return r, notes, err
		}
	}
	t.mu.Lock()
	received := slices.Clone(t.received)
	t.mu.Unlock()
	for _, v := range received {
		r.SnapshotsReceived += v
	}
	r.BenchCPUMS = ms(selfCPU()-selfCPU0) / float64(b.o.changes)
	srvCPU1, srvErr1 := b.serverCPU()
	cpuOK := len(b.o.serverPIDs) != 0 && srvErr == nil && srvErr1 == nil
	r.ApplyMS = percentiles(apply, false)
	r.PropagationMS = percentiles(total.prop, true)
	r.AckMS = percentiles(total.ackd, true)
	r.EndToEndMS = percentiles(e2e, true)
	r.AllStreamsMS = percentiles(total.all, false)
	mem1, memErr1 := b.memory()
	memOK := len(b.o.serverPIDs) != 0
	if err := errors.Join(memErr, memErr1); memOK && err != nil {
		notes = append(notes, fmt.Sprintf("%d streams: server memory: %v", n, err))
		memOK = false
	}
	if memOK {
		r.ServerRSSMB, r.ServerHWMMB = &memPair{}, &memPair{}
	}
	for rep, addr := range b.o.servers {
		rr := replicaResult{
			Server:            addr,
			PropagationMS:     percentiles(per[rep].prop, true),
			AckMS:             percentiles(per[rep].ackd, true),
			AllStreamsMS:      percentiles(per[rep].all, false),
			EarlyReceipts:     early[rep],
			SnapshotsReceived: received[rep],
		}
		for _, s := range streams {
			if s.replica == rep {
				rr.Streams++
			}
		}
		if len(b.o.serverPIDs) != 0 {
			rr.ServerPID = b.o.serverPIDs[rep]
		}
		if cpuOK {
			rr.ServerCPUMS = ms(srvCPU1[rep]-srvCPU0[rep]) / float64(b.o.changes)
			r.ServerCPUMS += rr.ServerCPUMS
		}
		if memOK {
			rr.ServerRSSMB = &memPair{Connected: mem0[rep].rss, AfterChanges: mem1[rep].rss}
			rr.ServerHWMMB = &memPair{Connected: mem0[rep].hwm, AfterChanges: mem1[rep].hwm}
			r.ServerRSSMB.Connected += mem0[rep].rss
			r.ServerRSSMB.AfterChanges += mem1[rep].rss
			r.ServerHWMMB.Connected += mem0[rep].hwm
			r.ServerHWMMB.AfterChanges += mem1[rep].hwm
		}
		r.Replicas = append(r.Replicas, rr)
	}
	// Close cleanly: end every stream, close the connections, then give
	// the servers a moment to notice before the next run.
	cancel()
	wg.Wait()
	for i, s := range streams {
		s.conn.Close()
		streams[i] = nil
	}
	time.Sleep(time.Second)
	return r, notes, nil
}

type mem struct{ rss, hwm float64 }

// memory reads each server's VmRSS and VmHWM in MiB, in the order of
// serverPIDs.
func (b *bench) memory() ([]mem, error) {
	out := make([]mem, len(b.o.serverPIDs))
	for i, pid := range b.o.serverPIDs {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			return nil, err
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, perr := strconv.ParseFloat(f[1], 64)
			if perr != nil {
				continue
			}
			switch f[0] {
			case "VmRSS:":
				out[i].rss = kb / 1024
			case "VmHWM:":
				out[i].hwm = kb / 1024
			}
		}
	}
	return out, nil
}

// serverCPU is each server's user+system time, from /proc/PID/stat, in
// the order of serverPIDs.
func (b *bench) serverCPU() ([]time.Duration, error) {
	out := make([]time.Duration, len(b.o.serverPIDs))
	for i, pid := range b.o.serverPIDs {
		d, err := procCPU(pid)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (which may hold spaces).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here;
	// USER_HZ is 100 on Linux.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// selfCPU is this process's user+system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// percentiles: nearest rank.
func percentiles(v []float64, withMax bool) pcts {
	if len(v) == 0 {
		return pcts{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	rank := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	out := pcts{P50: rank(0.50), P99: rank(0.99)}
	if withMax {
		m := s[len(s)-1]
		out.Max = &m
	}
	return out
}

func printTable(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "streams\tchanges\tconnect ms\tapply p50\tapply p99\tprop p50\tprop p99\tprop max\tack p99\tall p50\tall p99\tsrv cpu\tbench cpu\trss MiB\thwm MiB\t")
	for _, r := range rep.Results {
		rss, hwm := "-", "-"
		if r.ServerRSSMB != nil {
			rss = fmt.Sprintf("%.0f/%.0f", r.ServerRSSMB.Connected, r.ServerRSSMB.AfterChanges)
			hwm = fmt.Sprintf("%.0f/%.0f", r.ServerHWMMB.Connected, r.ServerHWMMB.AfterChanges)
		}
		fmt.Fprintf(tw, "%d\t%d\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%s\t%s\t\n", r.Streams, r.Changes, r.ConnectMS,
			r.ApplyMS.P50, r.ApplyMS.P99, r.PropagationMS.P50, r.PropagationMS.P99, *r.PropagationMS.Max, r.AckMS.P99,
			r.AllStreamsMS.P50, r.AllStreamsMS.P99, r.ServerCPUMS, r.BenchCPUMS, rss, hwm)
	}
	tw.Flush()
	fmt.Fprintln(w, "(ms from the apply command's exit; cpu: ms of CPU per change; rss/hwm: after connecting / after the changes)")
	if len(rep.Results) == 0 || len(rep.Results[0].Servers) < 2 {
		return
	}
	fmt.Fprintln(w, "per replica:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "streams\tserver\tits streams\tprop p50\tprop p99\tprop max\tack p50\tack p99\tall p50\tall p99\tsnapshots\tsrv cpu\trss MiB\thwm MiB\t")
	for _, r := range rep.Results {
		for _, rr := range r.Replicas {
			rss, hwm := "-", "-"
			if rr.ServerRSSMB != nil {
				rss = fmt.Sprintf("%.0f/%.0f", rr.ServerRSSMB.Connected, rr.ServerRSSMB.AfterChanges)
				hwm = fmt.Sprintf("%.0f/%.0f", rr.ServerHWMMB.Connected, rr.ServerHWMMB.AfterChanges)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.0f\t%s\t%s\t\n", r.Streams, rr.Server, rr.Streams,
				rr.PropagationMS.P50, rr.PropagationMS.P99, deref(rr.PropagationMS.Max), rr.AckMS.P50, rr.AckMS.P99,
				rr.AllStreamsMS.P50, rr.AllStreamsMS.P99, rr.SnapshotsReceived, rr.ServerCPUMS, rss, hwm)
		}
	}
	tw.Flush()
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}
