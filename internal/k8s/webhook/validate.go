package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
)

// Group is the API group of trustmesh objects in Kubernetes.
const Group = "trustmesh.dev"

// ValidatorConfig configures a Validator.
type ValidatorConfig struct {
	// TrustDomain is the mesh's trust domain, which SPIFFE IDs in objects
	// are checked against, as the server checks them on apply. Required.
	TrustDomain spiffeid.TrustDomain
	// Logger receives a record per denied request (a security event) and
	// per malformed review. Default: discard.
	Logger *slog.Logger
	// MaxRequestBytes bounds the AdmissionReview body. Default
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64
}

// Validator is the validating admission webhook for trustmesh.dev/v1
// objects: it refuses the objects that `trustmesh policy validate` and the
// server's apply refuse, with the same messages. It is safe for concurrent
// use.
type Validator struct {
	td       spiffeid.TrustDomain
	log      *slog.Logger
	maxBytes int64
}

var _ http.Handler = (*Validator)(nil)

// NewValidator checks cfg and returns a Validator.
func NewValidator(cfg ValidatorConfig) (*Validator, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("webhook validator: a trust domain is required")
	}
	if cfg.MaxRequestBytes < 0 {
		return nil, fmt.Errorf("webhook validator: max request bytes %d is negative", cfg.MaxRequestBytes)
	}
	v := &Validator{td: cfg.TrustDomain, log: cfg.Logger, maxBytes: cfg.MaxRequestBytes}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	v.log = v.log.With(slog.String(logComponent, "webhook-validate"))
	if v.maxBytes == 0 {
		v.maxBytes = DefaultMaxRequestBytes
	}
	return v, nil
}

// ServeHTTP answers an AdmissionReview v1 POST.
func (v *Validator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveReview(w, r, v.maxBytes, v.log, v.Admit)
}

// Admit decides on one admission request: CREATE and UPDATE of a
// trustmesh.dev object are allowed if the object is valid; everything else
// (DELETE, subresources such as status, an object being deleted) is
// allowed as it is.
func (v *Validator) Admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if (req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) || req.SubResource != "" {
		return allow()
	}
	resp := v.admit(req)
	if !resp.Allowed {
		v.log.Info("admission denied: invalid object", append(requestAttrs(req, req.Name), slog.String(logReason, resp.Result.Message))...)
	}
	return resp
}

func (v *Validator) admit(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Group != Group {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("this webhook validates %s objects, not %s: fix the webhook configuration's rules", Group, gvkString(req.Kind)))
	}
	obj, err := objectJSON(req.Object.Raw, req.Namespace, req.Name)
	if err != nil {
		return deny(http.StatusBadRequest, metav1.StatusReasonBadRequest, "request.object: "+err.Error())
	}
	if obj.deleting {
		// Removing finalizers from an object on its way out must not
		// depend on the object being valid.
		return allow()
	}
	if !slices.Contains(policy.Kinds(), obj.kind) {
		return deny(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
			fmt.Sprintf("unknown kind %q: the %s/v1 kinds are %s", obj.kind, Group, strings.Join(policy.Kinds(), ", ")))
	}
	o, err := policy.Unmarshal(obj.kind, obj.data)
	if err == nil {
		err = authz.Validate(o, v.td)
	}
	if err != nil {
		return deny(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, err.Error())
	}
	return allow()
}

func gvkString(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + " " + k.Kind
	}
	return k.Group + "/" + k.Version + " " + k.Kind
}

// kubeObject is a request's object as a trustmesh object's JSON.
type kubeObject struct {
	kind string
	data []byte
	// deleting is set when metadata.deletionTimestamp is.
	deleting bool
}

// ObjectJSON is objectJSON for other packages: the kind and JSON of the
// trustmesh object a resource declares, which the validator checks and the
// Kubernetes controller applies, so both decode the same object.
func ObjectJSON(raw []byte, namespace, name string) (kind string, data []byte, err error) {
	obj, err := objectJSON(raw, namespace, name)
	return obj.kind, obj.data, err
}

// objectJSON turns an object as the API server stores it into the JSON of
// a trustmesh object: apiVersion, kind, metadata and spec, with metadata
// cut to what trustmesh objects have (name, namespace, labels, annotations;
// not uid, resourceVersion, generation, creationTimestamp, managedFields,
// finalizers, ownerReferences...) and status dropped. Any other top-level
// field is kept, so that the decoder reports it as it would in a file.
// Name and namespace default to the request's (an object created with
// generateName has no name yet).
func objectJSON(raw []byte, namespace, name string) (kubeObject, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return kubeObject{}, errors.New("want a JSON object")
	}
	var obj kubeObject
	if k, ok := top["kind"]; ok {
		if err := json.Unmarshal(k, &obj.kind); err != nil {
			return kubeObject{}, errors.New("kind: want a string")
		}
	}
	var md map[string]json.RawMessage
	if m, ok := top["metadata"]; ok {
		if err := json.Unmarshal(m, &md); err != nil {
			return kubeObject{}, errors.New("metadata: want a JSON object")
		}
	}
	if md == nil {
		md = map[string]json.RawMessage{}
	}
	if ts, ok := md["deletionTimestamp"]; ok && string(ts) != "null" {
		obj.deleting = true
	}
	for key, def := range map[string]string{"name": name, "namespace": namespace} {
		if _, ok := md[key]; !ok && def != "" {
			md[key], _ = json.Marshal(def)
		}
	}

	var out, meta jsonObject
	for _, key := range []string{"apiVersion", "kind"} {
		if val, ok := top[key]; ok {
			out.field(key, val)
		}
	}
	// The fields of policy.Metadata that Kubernetes has.
	for _, key := range []string{"name", "namespace", "labels", "annotations"} {
		if val, ok := md[key]; ok {
			meta.field(key, val)
		}
	}
	out.field("metadata", meta.bytes())
	if val, ok := top["spec"]; ok {
		out.field("spec", val)
	}
	rest := make([]string, 0, len(top))
	for key := range top {
		switch key {
		case "apiVersion", "kind", "metadata", "spec", "status":
		default:
			rest = append(rest, key)
		}
	}
	slices.Sort(rest)
	for _, key := range rest {
		out.field(key, top[key])
	}
	obj.data = out.bytes()
	return obj, nil
}

// jsonObject writes a JSON object field by field, in the order given.
type jsonObject struct {
	b bytes.Buffer
}

func (o *jsonObject) field(key string, val json.RawMessage) {
	if o.b.Len() == 0 {
		o.b.WriteByte('{')
	} else {
		o.b.WriteByte(',')
	}
	k, _ := json.Marshal(key)
	o.b.Write(k)
	o.b.WriteByte(':')
	o.b.Write(val)
}

func (o *jsonObject) bytes() []byte {
	if o.b.Len() == 0 {
		return []byte("{}")
	}
	return append(bytes.Clone(o.b.Bytes()), '}')
}
