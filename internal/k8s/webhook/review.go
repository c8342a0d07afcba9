package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMaxRequestBytes bounds an AdmissionReview body. The API server
// accepts objects of up to 3 MiB, and an UPDATE review carries the old
// object and the new one.
const DefaultMaxRequestBytes = 7 << 20

// Log attribute keys.
const (
	logComponent = "component"
	logUID       = "uid"
	logOperation = "operation"
	logKind      = "kind"
	logNamespace = "namespace"
	logName      = "name"
	logUser      = "user"
	logReason    = "reason"
	logError     = "error"
)

// reviewHandler decides on one admission request. It returns the response
// without UID; the caller sets it.
type reviewHandler func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// errBadReview is a request body that is no AdmissionReview v1 request.
var errBadReview = errors.New("bad AdmissionReview")

// decodeReview parses an AdmissionReview v1 request as the API server
// sends it: apiVersion admission.k8s.io/v1, kind AdmissionReview, a
// request with a uid. Unknown fields are ignored (newer API servers add
// some); anything else wrong is an error.
func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &rv); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadReview, err)
	}
	if gv := admissionv1.SchemeGroupVersion.String(); rv.APIVersion != gv || rv.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: got apiVersion %q kind %q, want %q AdmissionReview", errBadReview, rv.APIVersion, rv.Kind, gv)
	}
	if rv.Request == nil {
		return nil, fmt.Errorf("%w: no request", errBadReview)
	}
	if rv.Request.UID == "" {
		return nil, fmt.Errorf("%w: request.uid is empty", errBadReview)
	}
	if rv.Response != nil {
		return nil, fmt.Errorf("%w: a request carries no response", errBadReview)
	}
	return &rv, nil
}

// serveReview reads an AdmissionReview from r, has decide answer it and
// writes the AdmissionReview response. A body that is no review is answered
// with an HTTP error: 400, 405, 413 or 415.
func serveReview(w http.ResponseWriter, r *http.Request, maxBytes int64, log *slog.Logger, decide reviewHandler) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "want POST of an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "want Content-Type application/json", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", maxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the request failed", http.StatusBadRequest)
		return
	}
	rv, err := decodeReview(body)
	if err != nil {
		log.Warn("bad admission review", slog.String(logError, err.Error()))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp := decide(rv.Request)
	resp.UID = rv.Request.UID
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		log.Error("encoding the admission response", slog.String(logError, err.Error()))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// allow is a response admitting the request unchanged.
func allow() *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true}
}

// deny is a response refusing the request with msg, which kubectl shows
// after "admission webhook ... denied the request: ".
func deny(code int32, reason metav1.StatusReason, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{
		Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg,
	}}
}

// requestAttrs are the log attributes naming a request and its object.
func requestAttrs(req *admissionv1.AdmissionRequest, name string) []any {
	return []any{
		slog.String(logUID, string(req.UID)),
		slog.String(logOperation, string(req.Operation)),
		slog.String(logKind, req.Kind.Kind),
		slog.String(logNamespace, req.Namespace),
		slog.String(logName, name),
		slog.String(logUser, req.UserInfo.Username),
	}
}
