package server

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trustmesh/trustmesh/internal/k8s/controller"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/policy/authz"
	"github.com/trustmesh/trustmesh/internal/store"
)

// kubernetesRole is the role of the actor of objects written from
// Kubernetes resources (as "k8s:MANAGER (kubernetes)" in the audit log).
const kubernetesRole = "kubernetes"

// kubernetesConfig is the API server connection: --kubeconfig if given,
// else the in-cluster service account.
func kubernetesConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubernetes outside a cluster needs --kubeconfig FILE: %w", err)
	}
	return c, nil
}

// newKubernetesController builds the controller that feeds trustmesh.dev
// resources into the store (see package controller).
func (s *Server) newKubernetesController() (*controller.Controller, error) {
	return controller.New(controller.Config{Rest: s.k8sRest, Applier: k8sApplier{s}, Logger: s.cfg.Logger})
}

// k8sApplier is the server as the Kubernetes controller sees it: the same
// validation, store writes and audit records as trustmesh apply.
type k8sApplier struct{ s *Server }

func (a k8sApplier) Apply(ctx context.Context, actor string, obj policy.Object) (int64, error) {
	if err := authz.Validate(obj, a.s.td); err != nil {
		return 0, &controller.InvalidError{Err: err}
	}
	res, err := a.s.applyObject(ctx, operator{name: actor, role: kubernetesRole}, obj, false)
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

func (a k8sApplier) Delete(ctx context.Context, actor, kind, namespace, name string) error {
	_, err := a.s.deleteObject(ctx, operator{name: actor, role: kubernetesRole}, kind, namespace, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (a k8sApplier) Managed(ctx context.Context) ([]policy.Object, error) {
	stored, err := a.s.store.ListObjects(ctx, "", "")
	if err != nil {
		return nil, err
	}
	var out []policy.Object
	for _, so := range stored {
		o, err := policy.Unmarshal(so.Kind, so.Data)
		if err != nil {
			return nil, fmt.Errorf("decode stored %s %s/%s: %w", so.Kind, so.Namespace, so.Name, err)
		}
		if o.GetMeta().Annotations[controller.ManagedByAnnotation] == controller.ManagedByKubernetes {
			out = append(out, o)
		}
	}
	return out, nil
}

func (a k8sApplier) Proxies(revision int64) controller.ProxyCounts {
	var pc controller.ProxyCounts
	for _, p := range a.s.push.Proxies() {
		pc.Connected++
		switch {
		case p.AckedRevision >= revision:
			pc.Acked++
		case p.NackRevision >= revision:
			pc.Nacked++
			pc.LastNack = p.NackReason
		}
	}
	return pc
}

// roleKubernetes is the singleton role of the Kubernetes controller: with
// several replicas one writes the resources' objects and statuses.
const roleKubernetes = "kubernetes-controller"

// runKubernetes runs the controller while this replica holds the role. A
// controller-runtime manager starts once, so each term gets a new one (the
// first is the one New built, which checked the configuration).
func (s *Server) runKubernetes(ctx context.Context) {
	c := s.k8s
	if s.k8sUsed {
		var err error
		if c, err = s.newKubernetesController(); err != nil {
			s.log.Error("kubernetes controller", "error", err)
			<-ctx.Done()
			return
		}
	}
	s.k8sUsed = true
	if err := c.Run(ctx); err != nil {
		s.log.Error("kubernetes controller stopped", "error", err)
	}
}
