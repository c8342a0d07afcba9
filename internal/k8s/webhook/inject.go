package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trustmesh/trustmesh/internal/k8s/redirect"
	"github.com/trustmesh/trustmesh/internal/serveraddr"
)

// Labels and annotations the injector reads and writes.
const (
	// LabelInject on a namespace, with the value InjectEnabled, selects
	// its pods for injection (the MutatingWebhookConfiguration's
	// namespaceSelector). On a pod, as label or annotation, "false" opts
	// the pod out.
	LabelInject = "trustmesh.dev/inject"
	// InjectEnabled is the value of LabelInject that enables injection.
	InjectEnabled = "enabled"
	// AnnotationIstioInject "false" opts a pod out too, as in Istio.
	AnnotationIstioInject = "sidecar.istio.io/inject"
	// AnnotationStatus marks an injected pod: what was added, as JSON.
	AnnotationStatus = "trustmesh.dev/status"
	// AnnotationInboundPort is the app port the proxy forwards inbound
	// connections to. Default: the first TCP port the pod's containers
	// declare; without one, no inbound traffic is redirected.
	AnnotationInboundPort = "trustmesh.dev/inbound-port"
	// AnnotationExcludeInboundPorts lists ports (comma-separated) reached
	// without the proxy, such as a metrics port scraped in plaintext.
	AnnotationExcludeInboundPorts = "trustmesh.dev/exclude-inbound-ports"
	// AnnotationCaptureOutboundPorts lists the outbound ports
	// (comma-separated, or *) redirected to the proxy's HTTP proxy
	// listener. Default: InjectorConfig.CaptureOutboundPorts.
	AnnotationCaptureOutboundPorts = "trustmesh.dev/capture-outbound-ports"
	// AnnotationExcludeOutboundCIDRs lists IPv4 CIDRs (comma-separated)
	// the app reaches without the proxy, added to the configured ones.
	AnnotationExcludeOutboundCIDRs = "trustmesh.dev/exclude-outbound-cidrs"
)

// The names of what the injector adds to a pod.
const (
	ProxyContainerName = "trustmesh-proxy"
	InitContainerName  = "trustmesh-init"
	SocketVolumeName   = "trustmesh-agent-socket"
)

// Defaults of InjectorConfig.
const (
	DefaultImage        = "ghcr.io/trustmesh/trustmesh:latest"
	DefaultCommand      = "trustmesh"
	DefaultServerAddr   = "trustmesh-server.trustmesh-system.svc:8443"
	DefaultSocketPath   = "/run/trustmesh/agent.sock"
	DefaultInboundPort  = 15006
	DefaultOutboundPort = 15001
	DefaultAdminPort    = 15000
	DefaultProxyUID     = 1337
)

// InjectorConfig configures an Injector: what goes into every injected
// pod. The zero value of each field but TrustDomain is its default.
type InjectorConfig struct {
	// TrustDomain is the mesh's: a pod's proxy asks for
	// spiffe://TD/ns/NAMESPACE/sa/SERVICE_ACCOUNT. Required.
	TrustDomain spiffeid.TrustDomain
	// Image holds the trustmesh binary; it runs both the proxy and
	// trustmesh-init (which needs iptables-restore in the image).
	// Default DefaultImage; the server should pass its own version.
	Image string
	// ImagePullPolicy default IfNotPresent.
	ImagePullPolicy corev1.PullPolicy
	// Command is the trustmesh binary in Image. Default DefaultCommand.
	Command string
	// ServerAddr is the proxy's --server: the server's gRPC HOST:PORT, or
	// a comma-separated list of replicas. Default DefaultServerAddr.
	ServerAddr string
	// SocketPath is the agent's Workload API socket on the node; its
	// directory is mounted into the proxy (hostPath). Default
	// DefaultSocketPath.
	SocketPath string
	// InboundPort is the proxy's inbound listener (all addresses).
	// Default DefaultInboundPort.
	InboundPort uint16
	// OutboundPort is the proxy's HTTP proxy listener (127.0.0.1), where
	// captured outbound connections go. Default DefaultOutboundPort.
	OutboundPort uint16
	// AdminPort is the proxy's admin listener. It listens on all
	// addresses, since the kubelet probes /ready at the pod's IP (so
	// /config_dump and /metrics are reachable from the pod network too),
	// and is never redirected. Default DefaultAdminPort.
	AdminPort uint16
	// ProxyUID is the uid (and gid) the proxy runs as; its connections
	// are never redirected. Default DefaultProxyUID.
	ProxyUID int64
	// CaptureOutboundPorts are the app's outbound destination ports
	// redirected to the proxy, unless a pod says otherwise. Default none:
	// the proxy routes captured connections by HTTP Host header only, so
	// any other protocol on a captured port would break.
	CaptureOutboundPorts redirect.Ports
	// ExcludeOutboundCIDRs are never captured (IPv4), in every pod.
	ExcludeOutboundCIDRs []netip.Prefix
	// ProxyResources and InitResources are the containers' resources.
	// Default: small requests (and limits for trustmesh-init).
	ProxyResources, InitResources *corev1.ResourceRequirements
	// Logger receives a record per injected, skipped or refused pod.
	// Default: discard.
	Logger *slog.Logger
	// MaxRequestBytes bounds the AdmissionReview body. Default
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64
}

// withDefaults returns c with its zero fields set to their defaults.
func (c InjectorConfig) withDefaults() InjectorConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Image, DefaultImage)
	def(&c.Command, DefaultCommand)
	def(&c.ServerAddr, DefaultServerAddr)
	def(&c.SocketPath, DefaultSocketPath)
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = corev1.PullIfNotPresent
	}
	if c.InboundPort == 0 {
		c.InboundPort = DefaultInboundPort
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = DefaultOutboundPort
	}
	if c.AdminPort == 0 {
		c.AdminPort = DefaultAdminPort
	}
	if c.ProxyUID == 0 {
		c.ProxyUID = DefaultProxyUID
	}
	if c.ProxyResources == nil {
		c.ProxyResources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("40Mi"),
		}}
	}
	if c.InitResources == nil {
		c.InitResources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("10Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("50Mi")},
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	return c
}

func (c InjectorConfig) validate() error {
	var errs []error
	if c.TrustDomain.IsZero() {
		errs = append(errs, errors.New("a trust domain is required"))
	}
	if _, err := serveraddr.Parse(c.ServerAddr); err != nil {
		errs = append(errs, fmt.Errorf("server address: %w", err))
	}
	if !path.IsAbs(c.SocketPath) || path.Clean(c.SocketPath) != c.SocketPath || path.Dir(c.SocketPath) == "/" {
		errs = append(errs, fmt.Errorf("socket path %q: want a clean absolute path in a directory of its own (the directory is mounted)", c.SocketPath))
	}
	if c.InboundPort == c.OutboundPort || c.InboundPort == c.AdminPort || c.OutboundPort == c.AdminPort {
		errs = append(errs, fmt.Errorf("ports: inbound %d, outbound %d and admin %d must differ", c.InboundPort, c.OutboundPort, c.AdminPort))
	}
	if c.ProxyUID < 1 || c.ProxyUID > 1<<31-1 {
		errs = append(errs, fmt.Errorf("proxy uid %d: want 1 to 2147483647 (not root)", c.ProxyUID))
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("exclude outbound CIDR %s: want IPv4", p))
		}
	}
	if c.MaxRequestBytes < 0 {
		errs = append(errs, fmt.Errorf("max request bytes %d is negative", c.MaxRequestBytes))
	}
	return errors.Join(errs...)
}

// Injector is the mutating admission webhook that adds the trustmesh proxy
// and traffic redirection to pods. It is safe for concurrent use.
type Injector struct {
	cfg InjectorConfig
	log *slog.Logger
}

var _ http.Handler = (*Injector)(nil)

// NewInjector fills in cfg's defaults, checks it and returns an Injector.
func NewInjector(cfg InjectorConfig) (*Injector, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("webhook injector: %w", err)
	}
	return &Injector{cfg: cfg, log: cfg.Logger.With(slog.String(logComponent, "webhook-inject"))}, nil
}

// ServeHTTP answers an AdmissionReview v1 POST.
func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveReview(w, r, in.cfg.MaxRequestBytes, in.log, in.Admit)
}

// Admit decides on one admission request: the CREATE of a pod that is
// not opted out, not on the host network and not injected already is
// allowed with a JSON patch that injects it. Every other request is
// allowed unchanged, except a pod whose trustmesh annotations are invalid,
// which is refused (running it without the mesh would fail open).
func (in *Injector) Admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create || req.SubResource != "" {
		return allow()
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		in.log.Warn("not a pod: fix the webhook configuration's rules", requestAttrs(req, req.Name)...)
		return allow()
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "request.object: not a pod: "+err.Error())
	}
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	attrs := requestAttrs(req, podName(&pod))
	if why := skipReason(&pod); why != "" {
		in.log.Info("pod not injected", append(attrs, slog.String(logReason, why))...)
		return allow()
	}
	patch, warnings, err := in.patch(&pod, ns)
	if err != nil {
		msg := "trustmesh injection: " + err.Error()
		in.log.Info("admission denied: pod cannot be injected", append(attrs, slog.String(logReason, msg))...)
		return deny(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, msg)
	}
	data, err := json.Marshal(patch)
	if err != nil {
		in.log.Error("encoding the patch", append(attrs, slog.String(logError, err.Error()))...)
		return deny(http.StatusInternalServerError, metav1.StatusReasonInternalError, "trustmesh injection: internal error")
	}
	in.log.Info("pod injected", attrs...)
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: data, PatchType: &pt, Warnings: warnings}
}

// podName names a pod in logs; a pod being created often has only a
// generateName.
func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}

// skipReason says why pod is left alone, or "" if it is to be injected.
func skipReason(pod *corev1.Pod) string {
	if _, ok := pod.Annotations[AnnotationStatus]; ok {
		return "already injected (" + AnnotationStatus + " is set)"
	}
	for _, key := range []string{LabelInject, AnnotationIstioInject} {
		for _, m := range []map[string]string{pod.Annotations, pod.Labels} {
			if v, ok := m[key]; ok {
				if b, err := strconv.ParseBool(v); err == nil && !b {
					return "opted out (" + key + ": " + v + ")"
				}
			}
		}
	}
	if pod.Spec.HostNetwork {
		return "host network: redirection would rewrite the node's iptables"
	}
	if pod.Spec.OS != nil && pod.Spec.OS.Name != corev1.Linux {
		return "not a Linux pod"
	}
	return ""
}

// patchOp is one RFC 6902 JSON patch operation.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// injectStatus is the value of AnnotationStatus.
type injectStatus struct {
	Version        int      `json:"version"`
	InitContainers []string `json:"initContainers"`
	Volumes        []string `json:"volumes"`
	SPIFFEID       string   `json:"spiffeID"`
	InboundPort    uint16   `json:"inboundPort,omitempty"`
}

// plan is what one pod gets, from the config and its annotations.
type plan struct {
	id           spiffeid.ID
	appPort      uint16 // 0: no inbound forwarding or redirection
	excludeIn    []uint16
	captureOut   redirect.Ports
	excludeCIDRs []netip.Prefix
}

// planFor reads the pod's annotations and ports.
func (in *Injector) planFor(pod *corev1.Pod, ns string) (plan, []string, error) {
	var p plan
	var warnings []string
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	id, err := spiffeid.FromSegments(in.cfg.TrustDomain, "ns", ns, "sa", sa)
	if err != nil {
		return p, nil, fmt.Errorf("no SPIFFE ID for namespace %q, service account %q: %w", ns, sa, err)
	}
	p.id = id

	var errs []error
	ann := pod.Annotations
	declared := declaredPorts(pod)
	if v, ok := ann[AnnotationInboundPort]; ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if err != nil || n == 0 {
			errs = append(errs, fmt.Errorf("annotation %s %q: want a port from 1 to 65535", AnnotationInboundPort, v))
		}
		p.appPort = uint16(n)
	} else if len(declared) > 0 {
		p.appPort = declared[0]
	}
	if p.appPort != 0 && slices.Contains([]uint16{in.cfg.InboundPort, in.cfg.OutboundPort, in.cfg.AdminPort}, p.appPort) {
		errs = append(errs, fmt.Errorf("app port %d is one of the proxy's ports (inbound %d, outbound %d, admin %d); set %s",
			p.appPort, in.cfg.InboundPort, in.cfg.OutboundPort, in.cfg.AdminPort, AnnotationInboundPort))
	}
	if v, ok := ann[AnnotationExcludeInboundPorts]; ok {
		if p.excludeIn, err = redirect.ParsePortList(v); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationExcludeInboundPorts, err))
		}
		if slices.Contains(p.excludeIn, p.appPort) {
			errs = append(errs, fmt.Errorf("annotation %s excludes the app port %d: the app would be reachable without mutual TLS", AnnotationExcludeInboundPorts, p.appPort))
		}
	}
	if _, ok := ann[AnnotationInboundPort]; !ok && p.appPort != 0 {
		var others []uint16
		for _, port := range declared[1:] {
			if !slices.Contains(p.excludeIn, port) {
				others = append(others, port)
			}
		}
		if len(others) > 0 {
			warnings = append(warnings, fmt.Sprintf("trustmesh: the proxy forwards inbound connections on every port to port %d, "+
				"so connections to ports %s reach port %d too: set %s to choose the app port, %s for ports reached without the proxy",
				p.appPort, redirect.JoinPorts(others), p.appPort, AnnotationInboundPort, AnnotationExcludeInboundPorts))
		}
	}
	p.captureOut = in.cfg.CaptureOutboundPorts
	if v, ok := ann[AnnotationCaptureOutboundPorts]; ok {
		if p.captureOut, err = redirect.ParsePorts(v); err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationCaptureOutboundPorts, err))
		}
	}
	p.excludeCIDRs = slices.Clone(in.cfg.ExcludeOutboundCIDRs)
	if v, ok := ann[AnnotationExcludeOutboundCIDRs]; ok {
		cidrs, err := redirect.ParseCIDRs(v)
		for _, c := range cidrs {
			if !c.Addr().Is4() {
				err = errors.Join(err, fmt.Errorf("CIDR %s: want IPv4", c))
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", AnnotationExcludeOutboundCIDRs, err))
		}
		p.excludeCIDRs = append(p.excludeCIDRs, cidrs...)
	}
	for _, c := range pod.Spec.Containers {
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == in.cfg.ProxyUID {
			warnings = append(warnings, fmt.Sprintf("trustmesh: container %q runs as the proxy's uid %d: its outbound connections are never redirected", c.Name, in.cfg.ProxyUID))
		}
	}
	return p, warnings, errors.Join(errs...)
}

// declaredPorts returns the TCP ports of the pod's app containers, in
// the order declared, without duplicates.
func declaredPorts(pod *corev1.Pod) []uint16 {
	var out []uint16
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && p.ContainerPort > 0 && p.ContainerPort <= 65535 &&
				!slices.Contains(out, uint16(p.ContainerPort)) {
				out = append(out, uint16(p.ContainerPort))
			}
		}
	}
	return out
}

// patch returns the JSON patch injecting pod.
func (in *Injector) patch(pod *corev1.Pod, ns string) ([]patchOp, []string, error) {
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == ProxyContainerName || c.Name == InitContainerName {
			return nil, nil, fmt.Errorf("the pod has a container named %q but no %s annotation; the name is reserved for the injected proxy", c.Name, AnnotationStatus)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == SocketVolumeName {
			return nil, nil, fmt.Errorf("the pod has a volume named %q; the name is reserved for the agent's socket", v.Name)
		}
	}
	p, warnings, err := in.planFor(pod, ns)
	if err != nil {
		return nil, nil, err
	}

	// Inserted at the front, in reverse: trustmesh-init, then the proxy,
	// then the pod's own init containers, which thus reach the network
	// through a running proxy.
	inits := []corev1.Container{in.proxyContainer(p)}
	if init, ok := in.initContainer(p); ok {
		inits = append([]corev1.Container{init}, inits...)
	}
	status := injectStatus{Version: 1, Volumes: []string{SocketVolumeName}, SPIFFEID: p.id.String(), InboundPort: p.appPort}
	for _, c := range inits {
		status.InitContainers = append(status.InitContainers, c.Name)
	}
	var ops []patchOp
	if len(pod.Spec.InitContainers) == 0 {
		ops = append(ops, patchOp{"add", "/spec/initContainers", inits})
	} else {
		for i := len(inits) - 1; i >= 0; i-- {
			ops = append(ops, patchOp{"add", "/spec/initContainers/0", inits[i]})
		}
	}
	vol := in.socketVolume()
	if len(pod.Spec.Volumes) == 0 {
		ops = append(ops, patchOp{"add", "/spec/volumes", []corev1.Volume{vol}})
	} else {
		ops = append(ops, patchOp{"add", "/spec/volumes/-", vol})
	}
	st, err := json.Marshal(status)
	if err != nil {
		return nil, nil, err
	}
	if pod.Annotations == nil {
		ops = append(ops, patchOp{"add", "/metadata/annotations", map[string]string{AnnotationStatus: string(st)}})
	} else {
		ops = append(ops, patchOp{"add", "/metadata/annotations/" + escapePointer(AnnotationStatus), string(st)})
	}
	return ops, warnings, nil
}

// escapePointer escapes a JSON pointer segment (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func (in *Injector) socketVolume() corev1.Volume {
	t := corev1.HostPathDirectoryOrCreate
	return corev1.Volume{Name: SocketVolumeName, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: path.Dir(in.cfg.SocketPath), Type: &t},
	}}
}

// proxyContainer is the native sidecar: an init container that keeps
// running (restartPolicy Always), after whose startup probe the next
// containers start.
func (in *Injector) proxyContainer(p plan) corev1.Container {
	c := in.cfg
	args := []string{
		"proxy",
		"--socket=" + c.SocketPath,
		"--server=" + c.ServerAddr,
		"--admin=0.0.0.0:" + itoa(c.AdminPort),
		"--http-proxy=127.0.0.1:" + itoa(c.OutboundPort),
		"--spiffe-id=" + p.id.String(),
	}
	if p.appPort != 0 {
		args = append(args, "--inbound=0.0.0.0:"+itoa(c.InboundPort)+"=127.0.0.1:"+itoa(p.appPort))
	}
	ready := corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(int32(c.AdminPort))}}
	always := corev1.ContainerRestartPolicyAlways
	return corev1.Container{
		Name:            ProxyContainerName,
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		Command:         []string{c.Command},
		Args:            args,
		RestartPolicy:   &always,
		// The app's containers start once this succeeds: the proxy has
		// its SVID and a configuration. Up to 10 minutes, then the
		// kubelet restarts the proxy.
		StartupProbe:   &corev1.Probe{ProbeHandler: ready, PeriodSeconds: 1, TimeoutSeconds: 3, FailureThreshold: 600},
		ReadinessProbe: &corev1.Probe{ProbeHandler: ready, PeriodSeconds: 10, TimeoutSeconds: 3, FailureThreshold: 3},
		Resources:      *c.ProxyResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &c.ProxyUID,
			RunAsGroup:               &c.ProxyUID,
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: SocketVolumeName, MountPath: path.Dir(c.SocketPath), ReadOnly: true}},
	}
}

// initContainer is trustmesh-init, which installs the iptables rules and
// exits; none if there is nothing to redirect.
func (in *Injector) initContainer(p plan) (corev1.Container, bool) {
	if p.appPort == 0 && p.captureOut.Empty() {
		return corev1.Container{}, false
	}
	c := in.cfg
	args := []string{"redirect", "--proxy-uid=" + strconv.FormatInt(c.ProxyUID, 10)}
	if p.appPort != 0 {
		args = append(args, "--inbound-port="+itoa(c.InboundPort), "--include-inbound-ports=*",
			"--exclude-inbound-ports="+redirect.JoinPorts(slices.Sorted(slices.Values(slices.Concat([]uint16{c.AdminPort}, p.excludeIn)))))
	}
	if !p.captureOut.Empty() {
		args = append(args, "--outbound-port="+itoa(c.OutboundPort), "--include-outbound-ports="+p.captureOut.String())
		if len(p.excludeCIDRs) > 0 {
			s := make([]string, len(p.excludeCIDRs))
			for i, c := range p.excludeCIDRs {
				s[i] = c.String()
			}
			args = append(args, "--exclude-outbound-cidrs="+strings.Join(s, ","))
		}
	}
	return corev1.Container{
		Name:            InitContainerName,
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		Command:         []string{c.Command},
		Args:            args,
		Resources:       *c.InitResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr[int64](0),
			RunAsGroup:               ptr[int64](0),
			RunAsNonRoot:             ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			Privileged:               ptr(false),
			// iptables takes a lock file under /run.
			ReadOnlyRootFilesystem: ptr(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
	}, true
}

func itoa(p uint16) string { return strconv.FormatUint(uint64(p), 10) }

func ptr[T any](v T) *T { return &v }
