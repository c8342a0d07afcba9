package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/httpnorm"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
	"github.com/trustmesh/trustmesh/internal/telemetry/tracing"
)

// headerDeniedBy carries the reason code of a refusal by the proxy: a
// short stable code, never policy text.
const headerDeniedBy = "X-Trustmesh-Denied-By"

// Reason codes of refusals before authorization (authz's own codes are
// in the authz package).
const (
	reasonNoConfig = "no-config"
	reasonBadHost  = "bad-host"
)

// security is the compiled authorization part of a snapshot.
type security struct {
	engine *authz.Engine
	cache  *authz.Cache         // nil: off, or the engine is not cacheable
	authn  *authn.Authenticator // nil: no RequestAuthentication applies
}

// evaluate decides r, through the decision cache when there is one.
func (s *security) evaluate(ctx context.Context, r *authz.Request) authz.Decision {
	if s.cache != nil {
		return s.cache.Evaluate(ctx, r)
	}
	return s.engine.Evaluate(ctx, r)
}

// compileSecurity decodes the snapshot's policy objects with the strict
// decoder, validates them for the trust domain, and compiles them. Any
// problem rejects the whole snapshot (the proxy keeps its last good one
// and NACKs): a policy that silently dropped out could allow what it
// denies.
func compileSecurity(objs []*configsyncv1.PolicyObject, td spiffeid.TrustDomain, keys *authn.KeySets, cacheSize int) (*security, error) {
	var aps []*policy.AuthorizationPolicy
	var rules []authn.Rule
	var errs []error
	for i, po := range objs {
		f := fmt.Sprintf("policies[%d]", i)
		obj, err := policy.Unmarshal(po.GetKind(), po.GetJson())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if err := policy.Validate(obj, td); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		switch o := obj.(type) {
		case *policy.AuthorizationPolicy:
			aps = append(aps, o)
		case *policy.RequestAuthentication:
			rules = append(rules, authn.RulesFrom(o)...)
		default:
			errs = append(errs, fmt.Errorf("%s: kind %s is not a policy kind", f, po.GetKind()))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sec := &security{}
	var err error
	if sec.engine, err = authz.Compile(aps); err != nil {
		return nil, err
	}
	sec.cache = authz.NewCache(sec.engine, cacheSize)
	if len(rules) > 0 {
		if sec.authn, err = authn.NewAuthenticator(rules, keys, nil); err != nil {
			return nil, fmt.Errorf("request authentication: %w", err)
		}
	}
	return sec, nil
}

// tapping reports whether the server asked for request summaries.
func (v *view) tapping() bool { return v != nil && v.tap }

// selfID is this proxy's SPIFFE ID as the snapshot names it ("" before one).
func (v *view) selfID() string {
	if v == nil {
		return ""
	}
	return v.self
}

// jwksURIs are the key sets the view needs fetched.
func (v *view) jwksURIs() []string {
	if v == nil || v.sec == nil || v.sec.authn == nil {
		return nil
	}
	return v.sec.authn.JWKSURIs()
}

// authorizeHTTP runs the inbound request pipeline before forwarding:
// host check, path normalization (the request is rewritten to the
// normalized path, which is what policies match and the app receives),
// JWT authentication, authorization. It answers the request itself and
// returns false when the request must not be forwarded; m is the request's
// metric labels for the forwarding (normalized host, deciding policy).
func (in *inbound) authorizeHTTP(w http.ResponseWriter, r *http.Request, pr *peer, span tracing.Span) (m reqMeta, ok bool) {
	p := in.p
	v := p.view.Load()
	m = reqMeta{dir: dirInbound, service: in.spec.App, mesh: pr != nil, destination: v.selfID(), decision: "deny", grpc: isGRPC(r), span: span}
	if pr != nil {
		m.source, m.tlsGroup = pr.idS, pr.group
	}
	span.SetIdentity(m.source, m.destination)
	var host string
	refuse := func(code int, reason, msg string) (reqMeta, bool) {
		w.Header().Set(headerDeniedBy, reason)
		m.host, m.reason, m.req = host, reason, r
		span.SetDecision("deny", m.policy)
		p.replyMeta(w, m, code, msg)
		return m, false
	}
	if v == nil || v.sec == nil {
		p.decisionEvent(r.Context(), decisionEvent{decision: "deny", reason: reasonNoConfig, peer: pr, r: r})
		return refuse(http.StatusServiceUnavailable, reasonNoConfig, "trustmesh: no authorization config yet")
	}

	host, err := httpnorm.Host(r.Host)
	if err != nil {
		host = ""
		return refuse(http.StatusBadRequest, reasonBadHost, "trustmesh: invalid Host header")
	}
	// Only origin-form reaches the app. Go's server replaces the Host
	// header with the authority of an absolute-form target (and drops the
	// header), so the two could not even be compared: a peer proxy never
	// sends absolute form, and it is refused rather than trusted.
	target := r.RequestURI
	rawPath, rawQuery, err := httpnorm.Split(target)
	var path string
	if err == nil {
		path, err = httpnorm.Path(rawPath, p.cfg.Paths)
	}
	if err != nil {
		reason := "bad-path-" + httpnorm.ReasonOf(err)
		p.decisionEvent(r.Context(), decisionEvent{decision: "deny", reason: reason, peer: pr, r: r})
		return refuse(http.StatusBadRequest, reason, "trustmesh: the request path cannot be normalized unambiguously ("+httpnorm.ReasonOf(err)+")")
	}
	if err := setPath(r, path, rawQuery); err != nil {
		return refuse(http.StatusBadRequest, "bad-path-invalid", "trustmesh: invalid request path")
	}
	span.SetPath(path)

	req := authz.Request{
		Principal: "", Port: in.appPort, HTTP: true,
		Method: r.Method, Host: host, Path: path, Headers: r.Header,
	}
	if pr != nil {
		req.Principal, req.SNI = pr.idS, pr.sni
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.SourceIP = ap.Addr().Unmap()
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		req.DestinationIP = addrOf(la)
	}

	if v.sec.authn != nil {
		res, err := v.sec.authn.Authenticate(r)
		if err != nil {
			var ae *authn.Error
			reason := "jwt-invalid"
			if errors.As(err, &ae) {
				reason = "jwt-" + string(ae.Reason)
				w.Header().Set("WWW-Authenticate", ae.Challenge())
			}
			p.decisionEvent(r.Context(), decisionEvent{decision: "deny", reason: reason, peer: pr, r: r, detail: err.Error()})
			p.log.Debug("token rejected", slog.Any("authn", err)) // the internal cause, never the token
			return refuse(http.StatusUnauthorized, reason, "trustmesh: "+err.Error())
		}
		req.Auth = authz.Auth{Principal: res.Principal, Audiences: res.Audiences, Presenter: res.Presenter, Claims: res.Claims}
	}

	d := v.sec.evaluate(r.Context(), &req)
	p.recordDecision(r.Context(), &d, pr, r, in.appPort)
	if d.Policy != nil {
		m.policy = d.Policy.String()
	}
	if !d.Allowed {
		return refuse(http.StatusForbidden, d.Reason, "trustmesh: denied by authorization policy")
	}
	span.SetDecision("allow", m.policy)
	m.host, m.decision, m.reason = host, "allow", d.Reason
	return m, true
}

// addrOf is the IP of a connection address, without formatting it.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// setPath rewrites r to the normalized path so that the app receives
// exactly what policies matched.
func setPath(r *http.Request, escaped, rawQuery string) error {
	if r.URL.RawQuery == rawQuery && r.URL.Host == "" && r.URL.Opaque == "" && r.URL.EscapedPath() == escaped {
		return nil // already what the app must receive (the common case)
	}
	unescaped, err := url.PathUnescape(escaped)
	if err != nil {
		return err
	}
	r.URL.Path = unescaped
	r.URL.RawPath = escaped
	if r.URL.EscapedPath() != escaped {
		return errors.New("path does not round-trip")
	}
	r.URL.RawQuery = rawQuery
	r.URL.Host, r.URL.Scheme, r.URL.Opaque = "", "", ""
	return nil
}

// authorizeTCP decides a TCP connection (passthrough) with the L4
// attributes; HTTP-only rules follow Istio's TCP semantics.
func (in *inbound) authorizeTCP(c net.Conn, pr *peer) bool {
	p := in.p
	v := p.view.Load()
	if v == nil || v.sec == nil {
		p.decisionEvent(p.ctx, decisionEvent{decision: "deny", reason: reasonNoConfig, peer: pr, tcp: true, port: in.appPort})
		return false
	}
	req := authz.Request{Port: in.appPort}
	if pr != nil {
		req.Principal, req.SNI = pr.idS, pr.sni
	}
	req.SourceIP, req.DestinationIP = addrOf(c.RemoteAddr()), addrOf(c.LocalAddr())
	d := v.sec.evaluate(p.ctx, &req)
	p.recordDecision(p.ctx, &d, pr, nil, in.appPort)
	if !d.Allowed && v.tapping() {
		p.tapTCP(&reqMeta{dir: dirInbound, source: req.Principal, destination: v.selfID(), decision: "deny", reason: d.Reason}, 0)
	}
	return d.Allowed
}

// decisionEvent is one authorization decision worth recording: every
// deny, every AUDIT match, every would-be deny of a dry-run policy. The
// proxy logs it (event=authz.decision) and counts it; the audit log takes
// it from there.
type decisionEvent struct {
	decision string // deny, allow, audit, dry-run-deny, dry-run-allow
	reason   string
	policy   *authz.Policy
	rule     int
	detail   string
	peer     *peer
	r        *http.Request // nil for TCP
	tcp      bool
	port     uint32
}

// recordDecision counts an evaluation and records its events; r is nil
// for a TCP connection on port.
func (p *Proxy) recordDecision(ctx context.Context, d *authz.Decision, pr *peer, r *http.Request, port uint32) {
	ev := func(decision string, o *authz.Outcome) decisionEvent {
		return decisionEvent{decision: decision, reason: o.Reason, policy: o.Policy, rule: o.Rule, detail: o.Detail, peer: pr, r: r, tcp: r == nil, port: port}
	}
	if d.Allowed {
		p.metrics.decisions.WithLabelValues("allow", d.Reason, policyLabel(d.Policy)).Inc()
	} else {
		p.decisionEvent(ctx, ev("deny", &d.Outcome))
	}
	if d.Audited {
		p.decisionEvent(ctx, ev("audit", &d.Audit))
	}
	if d.ShadowWorthRecording() {
		what := "dry-run-allow"
		if !d.Shadow.Allowed {
			what = "dry-run-deny"
		}
		p.decisionEvent(ctx, ev(what, &d.Shadow))
	}
}

func policyLabel(pol *authz.Policy) string {
	if pol == nil {
		return ""
	}
	return pol.String()
}

func (p *Proxy) decisionEvent(ctx context.Context, e decisionEvent) {
	p.metrics.decisions.WithLabelValues(e.decision, e.reason, policyLabel(e.policy)).Inc()
	attrs := []slog.Attr{
		slog.String("event", "authz.decision"),
		slog.String("decision", e.decision),
		slog.String(logReason, e.reason),
	}
	if e.policy != nil {
		attrs = append(attrs, slog.String("policy", e.policy.String()), slog.Int64("policy_revision", e.policy.Revision),
			slog.String("action", string(e.policy.Action)), slog.Int("rule", e.rule))
	}
	if e.peer != nil {
		attrs = append(attrs, slog.String(logPeer, e.peer.idS))
	}
	if e.r != nil {
		attrs = append(attrs, slog.String("method", e.r.Method), slog.String("path", e.r.URL.EscapedPath()),
			slog.String(logRemote, e.r.RemoteAddr), slog.String("request_id", e.r.Header.Get("X-Request-Id")))
	}
	if e.tcp {
		attrs = append(attrs, slog.String("protocol", "tcp"), slog.String(logPort, strconv.FormatUint(uint64(e.port), 10)))
	}
	if e.detail != "" {
		attrs = append(attrs, slog.String("detail", e.detail))
	}
	level := slog.LevelInfo
	if e.decision == "deny" {
		level = slog.LevelWarn
	}
	p.log.LogAttrs(ctx, level, "authorization decision", attrs...)
	p.events.add(e.proto())
}

// proto is the event as it travels to the server's audit log.
func (e *decisionEvent) proto() *configsyncv1.DecisionEvent {
	pe := &configsyncv1.DecisionEvent{TimeUnixNano: time.Now().UnixNano(), Decision: e.decision, Reason: e.reason, Rule: -1, Detail: e.detail, Port: e.port}
	if e.policy != nil {
		pe.Policy, pe.PolicyRevision, pe.Rule = e.policy.String(), e.policy.Revision, int32(e.rule) //nolint:gosec // G115: a rule index
	}
	if e.peer != nil {
		pe.Source = e.peer.idS
	}
	if e.r != nil {
		pe.Protocol, pe.Method, pe.Path, pe.Remote, pe.RequestId = "http", e.r.Method, e.r.URL.EscapedPath(), e.r.RemoteAddr, e.r.Header.Get("X-Request-Id")
	} else {
		pe.Protocol = "tcp"
	}
	return pe
}

// Events is the proxy's buffer of decision events, for the config
// stream's client to send to the server.
func (p *Proxy) Events() configsync.Buffer[*configsyncv1.DecisionEvent] { return p.events }

// Taps is the proxy's buffer of request summaries for trustmesh tap.
func (p *Proxy) Taps() configsync.Buffer[*configsyncv1.RequestSummary] { return p.taps }

// keySetsConfig is how the proxy fetches JWKS: authn's default client
// (timeout, no https-to-http redirects) and the proxy's logger.
func keySetsConfig(log *slog.Logger) authn.KeySetsConfig {
	return authn.KeySetsConfig{Logger: log}
}
