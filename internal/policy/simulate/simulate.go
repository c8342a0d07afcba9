// Package simulate decides described requests against a set of objects
// the way a destination's proxy would, and explains the decision: the
// server's explain endpoint runs it on the current objects, the CLI's
// policy test on files.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	yaml "sigs.k8s.io/yaml"

	"github.com/trustmesh/trustmesh/internal/authn"
	"github.com/trustmesh/trustmesh/internal/httpnorm"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// Input is the objects a decision depends on.
type Input struct {
	// Revision is the store revision of the objects (0 for files).
	Revision      int64
	Services      []*policy.Service
	Workloads     []*policy.Workload
	AuthzPolicies []*policy.AuthorizationPolicy
	RequestAuths  []*policy.RequestAuthentication
}

// Request describes a request to decide against the server's
// current policies, as the destination's proxy would.
type Request struct {
	// From is the caller's SPIFFE ID; empty for a plaintext caller.
	From string `json:"from,omitempty"`
	// To is the destination: a Service "name[.namespace]" or a workload's
	// SPIFFE ID.
	To string `json:"to"`
	// Port is the service port (default the service's first); for a
	// SPIFFE ID destination, the application port.
	Port uint32 `json:"port,omitempty"`
	// TCP asks about a TCP connection instead of an HTTP request.
	TCP     bool              `json:"tcp,omitempty"`
	Method  string            `json:"method,omitempty"`
	Path    string            `json:"path,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// JWT is a bearer token, verified with the RequestAuthentications
	// that apply to the destination.
	JWT string `json:"jwt,omitempty"`
	// Claims, instead of JWT, are the payload of a token taken as
	// verified (for policy tests without keys); the request principal is
	// "iss/sub" of them.
	Claims map[string]any `json:"claims,omitempty"`
	// SourceIP is the caller's address, for ipBlocks (default 127.0.0.1).
	SourceIP string `json:"sourceIP,omitempty"`
}

// Step is how one rule of one policy fared.
type Step struct {
	Policy   string `json:"policy"`
	Action   string `json:"action"`
	Revision int64  `json:"revision"`
	DryRun   bool   `json:"dryRun,omitempty"`
	Rule     int    `json:"rule"`
	Matched  bool   `json:"matched"`
	Field    string `json:"field,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Result is the decision and why.
type Result struct {
	// Allowed and Reason (a reason code) are the decision; HTTPStatus is
	// what the proxy would answer instead of forwarding (0 if forwarded).
	Allowed    bool   `json:"allowed"`
	Reason     string `json:"reason"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	// Policy, PolicyRevision and Rule decided; Policy is empty for a
	// default decision.
	Policy         string `json:"policy,omitempty"`
	PolicyRevision int64  `json:"policyRevision,omitempty"`
	Rule           int    `json:"rule"`
	// RuleYAML is the deciding rule as written.
	RuleYAML string `json:"ruleYAML,omitempty"`
	// Summary is the account in words.
	Summary string `json:"summary"`
	// Workload is the destination workload (namespace/name) whose
	// policies were evaluated; Path is the normalized path; Principal the
	// verified JWT principal, if any.
	Workload  string `json:"workload"`
	Port      uint32 `json:"port"`
	Path      string `json:"path,omitempty"`
	Principal string `json:"requestPrincipal,omitempty"`
	// AuthNote explains what happened to the JWT.
	AuthNote string `json:"authNote,omitempty"`
	// Audited names an AUDIT policy that matched; Shadow a dry-run
	// policy's would-be decision.
	Audited string `json:"audited,omitempty"`
	Shadow  string `json:"shadow,omitempty"`
	Steps   []Step `json:"steps"`
	// StoreRevision is the store revision of the objects used (0 offline).
	StoreRevision int64 `json:"storeRevision"`
}

// Explain decides req against world the way the destination's proxy
// would (path normalization with the default options, JWT, policies) and
// says why.
func Explain(ctx context.Context, world Input, req *Request) (*Result, error) {
	wl, port, host, err := destination(world, req)
	if err != nil {
		return nil, err
	}
	resp := &Result{Workload: wl.Metadata.Namespace + "/" + wl.Metadata.Name, Port: port, StoreRevision: world.Revision, Rule: -1}
	areq := authz.Request{Principal: req.From, Port: port, HTTP: !req.TCP}
	if req.From != "" && !strings.HasPrefix(req.From, "spiffe://") {
		return nil, fmt.Errorf("--from %q: want a SPIFFE ID (spiffe://trust-domain/path), or leave it out for a plaintext caller", req.From)
	}
	srcIP := req.SourceIP
	if srcIP == "" {
		srcIP = "127.0.0.1"
	}
	if areq.SourceIP, err = netip.ParseAddr(srcIP); err != nil {
		return nil, fmt.Errorf("source IP %q: not an IP address", srcIP)
	}

	var aps []*policy.AuthorizationPolicy
	for _, ap := range world.AuthzPolicies {
		if ap.AppliesTo(wl) {
			aps = append(aps, ap)
		}
	}
	engine, err := authz.Compile(aps)
	if err != nil {
		return nil, fmt.Errorf("the stored policies do not compile (proxies keep their last good config): %w", err)
	}

	if !req.TCP {
		method := req.Method
		if method == "" {
			method = http.MethodGet
		}
		target := req.Path
		if target == "" {
			target = "/"
		}
		rawPath, rawQuery, err := httpnorm.Split(target)
		path := ""
		if err == nil {
			path, err = httpnorm.Path(rawPath, httpnorm.Options{})
		}
		if err != nil {
			resp.Reason, resp.HTTPStatus = "bad-path-"+httpnorm.ReasonOf(err), http.StatusBadRequest
			resp.Summary = fmt.Sprintf("DENY (400 %s): the proxy refuses the path before any policy (default path options): %v", resp.Reason, err)
			return resp, nil
		}
		resp.Path = path
		hr, err := http.NewRequestWithContext(ctx, method, "http://"+host+path, nil)
		if err != nil {
			return nil, fmt.Errorf("method %q: %w", method, err)
		}
		hr.URL.RawQuery = rawQuery
		for k, val := range req.Headers {
			if strings.EqualFold(k, "host") {
				host = val
				continue
			}
			hr.Header.Set(k, val)
		}
		if host, err = httpnorm.Host(host); err != nil {
			return nil, fmt.Errorf("host: %w", err)
		}
		if req.JWT != "" {
			hr.Header.Set("Authorization", "Bearer "+req.JWT)
		}
		areq.Method, areq.Host, areq.Path, areq.Headers = method, host, path, hr.Header

		var note, reason string
		var status int
		if req.Claims != nil {
			iss, _ := req.Claims["iss"].(string)
			sub, _ := req.Claims["sub"].(string)
			areq.Auth = authz.Auth{Principal: iss + "/" + sub, Claims: req.Claims, Audiences: audiences(req.Claims["aud"])}
			if azp, ok := req.Claims["azp"].(string); ok {
				areq.Auth.Presenter = azp
			}
			note = "claims taken as a verified token: request principal " + areq.Auth.Principal
		} else if note, status, reason, err = authenticate(ctx, world, wl, hr, &areq); err != nil {
			return nil, err
		}
		resp.AuthNote, resp.Principal = note, areq.Auth.Principal
		if status != 0 {
			resp.Reason, resp.HTTPStatus = reason, status
			resp.Summary = fmt.Sprintf("DENY (401 %s): %s", reason, note)
			return resp, nil
		}
	}

	x := engine.Explain(ctx, &areq)
	d := x.Decision
	resp.Allowed, resp.Reason, resp.Rule, resp.Summary = d.Allowed, d.Reason, d.Rule, x.Summary()
	if !d.Allowed {
		resp.HTTPStatus = http.StatusForbidden
	}
	if d.Policy != nil {
		resp.Policy, resp.PolicyRevision = d.Policy.String(), d.Policy.Revision
		resp.RuleYAML = ruleYAML(aps, d.Policy, d.Rule)
	}
	if d.Audited {
		resp.Audited = d.Audit.Policy.String()
	}
	if d.ShadowWorthRecording() {
		verdict := "DENY"
		if d.Shadow.Allowed {
			verdict = "ALLOW"
		}
		resp.Shadow = fmt.Sprintf("with the dry-run policies enforced: %s (%s)", verdict, d.Shadow.Reason)
		if d.Shadow.Policy != nil {
			resp.Shadow += " by " + d.Shadow.Policy.String()
		}
	}
	for _, st := range x.Steps {
		resp.Steps = append(resp.Steps, Step{Policy: st.Policy.String(), Action: string(st.Policy.Action), Revision: st.Policy.Revision,
			DryRun: st.Policy.DryRun, Rule: st.Rule, Matched: st.Matched, Field: st.Field, Detail: st.Detail})
	}
	return resp, nil
}

// destination finds the workload, application port and host of an
// explain request's --to.
func destination(world Input, req *Request) (*policy.Workload, uint32, string, error) {
	if strings.HasPrefix(req.To, "spiffe://") {
		for _, wl := range world.Workloads {
			if wl.Spec.SPIFFEID == req.To {
				if req.Port == 0 {
					return nil, 0, "", errors.New("--port is required with a SPIFFE ID destination: the application port")
				}
				return wl, req.Port, wl.Metadata.Name, nil
			}
		}
		return nil, 0, "", fmt.Errorf("no Workload has the SPIFFE ID %s", req.To)
	}
	name, ns, _ := strings.Cut(req.To, ".")
	ns = strings.TrimSuffix(ns, ".svc")
	if ns == "" {
		ns = policy.DefaultNamespace
	}
	var svc *policy.Service
	for _, sv := range world.Services {
		if sv.Metadata.Name == name && sv.Metadata.Namespace == ns {
			svc = sv
		}
	}
	if svc == nil {
		return nil, 0, "", fmt.Errorf("no Service %q in namespace %q (give --to NAME[.NAMESPACE], or a workload's SPIFFE ID with --port)", name, ns)
	}
	sp := svc.Spec.Ports[0]
	if req.Port != 0 {
		found := false
		for _, p := range svc.Spec.Ports {
			if p.Port == req.Port {
				sp, found = p, true
			}
		}
		if !found {
			return nil, 0, "", fmt.Errorf("service %s.%s has no port %d", name, ns, req.Port)
		}
	}
	for _, wl := range world.Workloads {
		if svc.Selects(wl) {
			return wl, sp.Target(), name + "." + ns, nil
		}
	}
	return nil, 0, "", fmt.Errorf("service %s.%s selects no Workload: nothing serves it, so no proxy decides", name, ns)
}

// authenticate verifies the request's JWT as the destination's proxy
// would. A rejected token gives status 401 and its reason code.
func authenticate(ctx context.Context, world Input, wl *policy.Workload, hr *http.Request, areq *authz.Request) (note string, status int, reason string, err error) {
	var rules []authn.Rule
	for _, ra := range world.RequestAuths {
		if ra.AppliesTo(wl) {
			rules = append(rules, authn.RulesFrom(ra)...)
		}
	}
	hasToken := hr.Header.Get("Authorization") != ""
	if len(rules) == 0 {
		if hasToken {
			return "no RequestAuthentication applies to the destination: the proxy does not read the token, so request.auth is empty", 0, "", nil
		}
		return "", 0, "", nil
	}
	keys := authn.NewKeySets(authn.KeySetsConfig{})
	a, err := authn.NewAuthenticator(rules, keys, nil)
	if err != nil {
		return "", 0, "", fmt.Errorf("the stored RequestAuthentications do not compile: %w", err)
	}
	if uris := a.JWKSURIs(); len(uris) > 0 && hasToken {
		keys.Want(uris)
		if err := keys.Refresh(ctx); err != nil {
			note = fmt.Sprintf("fetching the JWKS from the server failed (%v); the proxies fetch it themselves. ", err)
		}
	}
	res, err := a.Authenticate(hr)
	if err != nil {
		var ae *authn.Error
		reason = "jwt-invalid"
		if errors.As(err, &ae) {
			reason = "jwt-" + string(ae.Reason)
		}
		return note + "the token is rejected: " + err.Error(), http.StatusUnauthorized, reason, nil
	}
	if !res.Authenticated() {
		return note + "no token: request.auth is empty (only policies requiring a request principal refuse that)", 0, "", nil
	}
	areq.Auth = authz.Auth{Principal: res.Principal, Audiences: res.Audiences, Presenter: res.Presenter, Claims: res.Claims}
	return note + "token verified: request principal " + res.Principal, 0, "", nil
}

// ruleYAML renders rule i of the named policy.
func ruleYAML(aps []*policy.AuthorizationPolicy, p *authz.Policy, i int) string {
	for _, ap := range aps {
		if ap.Metadata.Namespace == p.Namespace && ap.Metadata.Name == p.Name && i >= 0 && i < len(ap.Spec.Rules) {
			b, err := yaml.Marshal(ap.Spec.Rules[i])
			if err != nil {
				return ""
			}
			return string(b)
		}
	}
	return ""
}

// audiences reads an aud claim: a string or a list of strings.
func audiences(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
