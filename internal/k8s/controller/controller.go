package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/trustmesh/trustmesh/internal/k8s/webhook"
	"github.com/trustmesh/trustmesh/internal/policy"
)

// Group and Version of trustmesh's custom resources.
const (
	Group   = "trustmesh.dev"
	Version = "v1"
)

// ManagedByAnnotation marks the objects the controller wrote, with value
// ManagedByKubernetes.
const (
	ManagedByAnnotation = "trustmesh.dev/managed-by"
	ManagedByKubernetes = "kubernetes"
)

// fieldManager names the controller's own status writes in managedFields,
// so they are never taken for the author of a change.
const fieldManager = "trustmesh-controller"

// Defaults.
const (
	// DefaultResync is how often an acknowledged resource's status is
	// refreshed (proxies come and go).
	DefaultResync = 30 * time.Second
	// pendingRequeue is how soon a resource not yet acknowledged by every
	// connected proxy is looked at again.
	pendingRequeue = time.Second
)

// InvalidError is an Applier's refusal of an object that does not
// validate: reported in the resource's status, not retried.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// ProxyCounts is what the status reports about the proxies and one store
// revision.
type ProxyCounts struct {
	// Connected proxies, those current as of the revision (ACKed a
	// snapshot computed from it or a later one), and those that rejected
	// such a snapshot, with the last reason.
	Connected, Acked, Nacked int
	LastNack                 string
}

// Applier is the control plane as the controller sees it (the server).
type Applier interface {
	// Apply validates and writes obj on behalf of actor and returns the
	// store revision of the object now in force. A validation failure is
	// an *InvalidError.
	Apply(ctx context.Context, actor string, obj policy.Object) (revision int64, err error)
	// Delete removes an object; no error if it does not exist.
	Delete(ctx context.Context, actor, kind, namespace, name string) error
	// Managed lists the live objects that carry ManagedByAnnotation.
	Managed(ctx context.Context) ([]policy.Object, error)
	// Proxies counts the proxies against revision.
	Proxies(revision int64) ProxyCounts
}

// Config configures a Controller.
type Config struct {
	// Rest is the API server connection (in-cluster or a kubeconfig).
	Rest *rest.Config
	// Applier is required.
	Applier Applier
	// Resync (default DefaultResync).
	Resync time.Duration
	Logger *slog.Logger
}

// Controller watches every trustmesh kind's resources.
type Controller struct {
	cfg Config
	log *slog.Logger
	mgr manager.Manager
}

// New connects to the API server and registers a reconciler per kind.
func New(cfg Config) (*Controller, error) {
	if cfg.Rest == nil || cfg.Applier == nil {
		return nil, errors.New("kubernetes controller: an API server connection and an applier are required")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Controller{cfg: cfg, log: cfg.Logger.With("component", "k8s-controller")}
	log.SetLogger(logr.FromSlogHandler(c.log.Handler()))
	mgr, err := ctrl.NewManager(cfg.Rest, manager.Options{
		// The server serves its own metrics and health; none of the
		// manager's listeners.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("kubernetes controller: %w", err)
	}
	c.mgr = mgr
	for _, kind := range policy.Kinds() {
		r := &reconciler{kind: kind, gvk: schema.GroupVersionKind{Group: Group, Version: Version, Kind: kind},
			client: mgr.GetClient(), applier: cfg.Applier, resync: cfg.Resync, log: c.log.With("kind", kind)}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(r.gvk)
		if err := ctrl.NewControllerManagedBy(mgr).For(u).Named("trustmesh-" + kind).Complete(r); err != nil {
			return nil, fmt.Errorf("kubernetes controller for %s: %w", kind, err)
		}
	}
	if err := mgr.Add(manager.RunnableFunc(c.collectOrphans)); err != nil {
		return nil, err
	}
	return c, nil
}

// Run watches until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	c.log.Info("watching trustmesh.dev resources")
	if err := c.mgr.Start(ctx); err != nil {
		return fmt.Errorf("kubernetes controller: %w", err)
	}
	return nil
}

// collectOrphans deletes, once the caches are in sync, the objects the
// controller wrote whose resource no longer exists (deleted while the server
// was down).
func (c *Controller) collectOrphans(ctx context.Context) error {
	if !c.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	objs, err := c.cfg.Applier.Managed(ctx)
	if err != nil {
		c.log.Error("list objects written from Kubernetes; orphans stay until their next change", "error", err)
		return nil
	}
	for _, o := range objs {
		m := o.GetMeta()
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: Group, Version: Version, Kind: o.GetKind()})
		err := c.mgr.GetClient().Get(ctx, types.NamespacedName{Namespace: m.Namespace, Name: m.Name}, u)
		switch {
		case apierrors.IsNotFound(err):
			if err := c.cfg.Applier.Delete(ctx, "k8s:resource-deleted", o.GetKind(), m.Namespace, m.Name); err != nil {
				c.log.Error("delete object whose resource is gone", "object", o.GetKind()+"/"+m.Namespace+"/"+m.Name, "error", err)
			}
		case err != nil:
			c.log.Error("look up the resource of an object written from Kubernetes", "object", o.GetKind()+"/"+m.Namespace+"/"+m.Name, "error", err)
		}
	}
	return nil
}

// reconciler brings one kind's objects in line with its resources.
type reconciler struct {
	kind    string
	gvk     schema.GroupVersionKind
	client  client.Client
	applier Applier
	resync  time.Duration
	log     *slog.Logger
}

func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(r.gvk)
	if err := r.client.Get(ctx, req.NamespacedName, u); err != nil {
		if !apierrors.IsNotFound(err) {
			return reconcile.Result{}, err
		}
		if err := r.applier.Delete(ctx, "k8s:resource-deleted", r.kind, req.Namespace, req.Name); err != nil {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, nil
	}
	if u.GetDeletionTimestamp() != nil {
		return reconcile.Result{}, nil // it goes away; its delete event follows
	}
	st := status{ObservedGeneration: u.GetGeneration()}
	obj, err := ToObject(u)
	if err == nil {
		st.AppliedRevision, err = r.applier.Apply(ctx, Actor(u), obj)
	}
	var invalid *InvalidError
	switch {
	case errors.As(err, &invalid):
		st.setCondition(metav1.Condition{Type: "Accepted", Status: metav1.ConditionFalse, Reason: "Invalid", Message: clip(err.Error()),
			ObservedGeneration: u.GetGeneration()})
		// Keep the applied revision the store has, if any: the last good
		// object stays in force.
		st.AppliedRevision = appliedRevision(u)
	case err != nil:
		return reconcile.Result{}, err // the store: retried with backoff
	default:
		st.setCondition(metav1.Condition{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Applied",
			Message: fmt.Sprintf("applied as store revision %d", st.AppliedRevision), ObservedGeneration: u.GetGeneration()})
	}
	result := reconcile.Result{RequeueAfter: r.resync}
	if st.AppliedRevision > 0 {
		pc := r.applier.Proxies(st.AppliedRevision)
		st.Proxies = &proxiesStatus{Connected: pc.Connected, Acked: pc.Acked, Nacked: pc.Nacked, LastNack: clip(pc.LastNack)}
		if pc.Acked+pc.Nacked < pc.Connected {
			result.RequeueAfter = pendingRequeue
		}
	}
	if err := r.writeStatus(ctx, u, st); err != nil {
		return reconcile.Result{}, err
	}
	return result, nil
}

// status is the status subresource the controller writes.
type status struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	AppliedRevision    int64              `json:"appliedRevision,omitempty"`
	Proxies            *proxiesStatus     `json:"proxies,omitempty"`
}

type proxiesStatus struct {
	Connected int    `json:"connected"`
	Acked     int    `json:"acked"`
	Nacked    int    `json:"nacked"`
	LastNack  string `json:"lastNack,omitempty"`
}

func (s *status) setCondition(c metav1.Condition) {
	s.Conditions = []metav1.Condition{c}
}

// writeStatus updates the status subresource when it changed (a write
// triggers another reconcile; an unchanged status must not loop).
func (r *reconciler) writeStatus(ctx context.Context, u *unstructured.Unstructured, st status) error {
	old, _, _ := unstructured.NestedMap(u.Object, "status")
	// Keep the transition time of a condition whose status is unchanged.
	if prev := previousCondition(old); prev != nil && len(st.Conditions) == 1 && prev.Status == st.Conditions[0].Status {
		st.Conditions[0].LastTransitionTime = prev.LastTransitionTime
	} else if len(st.Conditions) == 1 {
		st.Conditions[0].LastTransitionTime = metav1.Now()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var next map[string]any
	if err := json.Unmarshal(b, &next); err != nil {
		return err
	}
	if reflect.DeepEqual(old, next) {
		return nil
	}
	u = u.DeepCopy()
	u.Object["status"] = next
	if err := r.client.Status().Update(ctx, u, client.FieldOwner(fieldManager)); err != nil {
		return fmt.Errorf("update status of %s %s/%s: %w", r.kind, u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

func previousCondition(old map[string]any) *metav1.Condition {
	if old == nil {
		return nil
	}
	b, err := json.Marshal(old)
	if err != nil {
		return nil
	}
	var st status
	if json.Unmarshal(b, &st) != nil || len(st.Conditions) == 0 {
		return nil
	}
	return &st.Conditions[0]
}

func appliedRevision(u *unstructured.Unstructured) int64 {
	rev, _, _ := unstructured.NestedInt64(u.Object, "status", "appliedRevision")
	return rev
}

// ToObject decodes a resource as the trustmesh object it declares, as the
// validating webhook does (webhook.ObjectJSON: apiVersion, kind, metadata's
// name, namespace, labels and annotations, and spec, with the CLI's strict
// decoder), then drops kubectl's last-applied annotation and adds the
// managed-by mark.
func ToObject(u *unstructured.Unstructured) (policy.Object, error) {
	if u.GetAPIVersion() != Group+"/"+Version {
		return nil, &InvalidError{fmt.Errorf("apiVersion %q: want %s/%s", u.GetAPIVersion(), Group, Version)}
	}
	raw, err := u.MarshalJSON()
	if err != nil {
		return nil, err
	}
	kind, data, err := webhook.ObjectJSON(raw, "", "")
	if err != nil {
		return nil, &InvalidError{err}
	}
	obj, err := policy.Unmarshal(kind, data)
	if err != nil {
		return nil, &InvalidError{err}
	}
	m := obj.GetMeta()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	delete(m.Annotations, "kubectl.kubernetes.io/last-applied-configuration")
	m.Annotations[ManagedByAnnotation] = ManagedByKubernetes
	return obj, nil
}

// Actor names who last changed a resource, from its managedFields: the
// manager of the most recent write other than the controller's own status
// writes, as "k8s:MANAGER" ("k8s:unknown" without one).
func Actor(u *unstructured.Unstructured) string {
	fields := slices.DeleteFunc(slices.Clone(u.GetManagedFields()), func(f metav1.ManagedFieldsEntry) bool {
		return f.Manager == fieldManager || f.Subresource == "status"
	})
	if len(fields) == 0 {
		return "k8s:unknown"
	}
	last := slices.MaxFunc(fields, func(a, b metav1.ManagedFieldsEntry) int {
		return timeOf(a).Compare(timeOf(b))
	})
	return "k8s:" + last.Manager
}

func timeOf(f metav1.ManagedFieldsEntry) time.Time {
	if f.Time == nil {
		return time.Time{}
	}
	return f.Time.Time
}

// clip bounds a message written into a status (the API server limits
// condition messages to 32 KiB).
func clip(s string) string {
	const max = 4096
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
