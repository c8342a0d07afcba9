package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trustmesh/trustmesh/internal/authn"
)

// admin is the --admin listener: health, readiness, config dump, metrics.
// It is plain HTTP for local scraping; bind it to loopback.
type admin struct {
	ln     net.Listener
	server *http.Server
}

func newAdmin(p *Proxy, ln net.Listener) *admin {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if why := p.notReady(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /config_dump", p.serveConfigDump)
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.gatherer, promhttp.HandlerOpts{}))
	if p.cfg.Pprof {
		// Profiles reveal request data in memory: only on request, and
		// only on the admin listener (loopback by default).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	return &admin{ln: ln, server: srv}
}

// configDump is the /config_dump document. It never contains keys.
type configDump struct {
	Ready     bool          `json:"ready"`
	NotReady  string        `json:"not_ready,omitempty"`
	SVID      *svidDump     `json:"svid,omitempty"`
	Listeners listenersDump `json:"listeners"`
	Snapshot  *snapshotDump `json:"snapshot,omitempty"`
	Authz     *authzDump    `json:"authz,omitempty"`
}

// authzDump is what the proxy enforces: the compiled policies and the
// state of the JWKS it fetches.
type authzDump struct {
	Policies []policyDump         `json:"policies"`
	Cache    bool                 `json:"decision_cache"`
	JWKS     []authn.KeySetStatus `json:"jwks,omitempty"`
}

type policyDump struct {
	Name     string `json:"name"`
	Revision int64  `json:"revision"`
	Action   string `json:"action"`
	DryRun   bool   `json:"dry_run,omitempty"`
	Rules    int    `json:"rules"`
}

type svidDump struct {
	ID        string    `json:"id"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Serial    string    `json:"serial"`
}

type listenersDump struct {
	Inbound   []inboundDump  `json:"inbound,omitempty"`
	Outbound  []outboundDump `json:"outbound,omitempty"`
	HTTPProxy string         `json:"http_proxy,omitempty"`
	Admin     string         `json:"admin,omitempty"`
}

type inboundDump struct {
	Address string `json:"address"`
	App     string `json:"app"`
	Mode    string `json:"mode"`
}

type outboundDump struct {
	Address  string `json:"address"`
	Service  string `json:"service"`
	Port     uint32 `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

type snapshotDump struct {
	Version   uint64          `json:"version"`
	AppliedAt time.Time       `json:"applied_at"`
	Contents  json.RawMessage `json:"contents"`
}

func (p *Proxy) serveConfigDump(w http.ResponseWriter, _ *http.Request) {
	v := p.view.Load()
	d := configDump{NotReady: p.notReady()}
	d.Ready = d.NotReady == ""
	if svid, err := p.cfg.Source.GetX509SVID(); err == nil && svid != nil && len(svid.Certificates) > 0 {
		leaf := svid.Certificates[0]
		d.SVID = &svidDump{ID: svid.ID.String(), NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), Serial: leaf.SerialNumber.String()}
	}
	for _, in := range p.inbound {
		d.Listeners.Inbound = append(d.Listeners.Inbound, inboundDump{Address: in.ln.Addr().String(), App: in.spec.App, Mode: v.mode(in.appPort).String()})
	}
	for _, out := range p.outbound {
		od := outboundDump{Address: out.ln.Addr().String(), Service: out.spec.Service + "." + out.spec.Namespace, Port: out.spec.Port}
		if sp := out.resolve(); sp != nil {
			od.Port, od.Protocol = sp.port, sp.protocol.String()
		}
		d.Listeners.Outbound = append(d.Listeners.Outbound, od)
	}
	if p.httpProxy != nil {
		d.Listeners.HTTPProxy = p.httpProxy.ln.Addr().String()
	}
	if p.admin != nil {
		d.Listeners.Admin = p.admin.ln.Addr().String()
	}
	if v != nil {
		raw, err := protojson.Marshal(v.snapshot)
		if err != nil {
			http.Error(w, "marshal snapshot: "+err.Error(), http.StatusInternalServerError)
			return
		}
		d.Snapshot = &snapshotDump{Version: v.version, AppliedAt: v.appliedAt.UTC(), Contents: raw}
		if v.sec != nil {
			ad := &authzDump{Policies: []policyDump{}, Cache: v.sec.cache != nil, JWKS: p.keys.Status()}
			for _, pol := range v.sec.engine.Policies {
				ad.Policies = append(ad.Policies, policyDump{Name: pol.String(), Revision: pol.Revision, Action: string(pol.Action), DryRun: pol.DryRun, Rules: pol.Rules()})
			}
			d.Authz = ad
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
}
