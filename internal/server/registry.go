package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/policy"
	"github.com/trustmesh/trustmesh/internal/store"
)

// view is an immutable picture of what the node API serves, rebuilt from the
// store on every change and swapped in atomically. Streams wait on changed,
// which is closed when a newer view replaces this one.
type view struct {
	revision    int64
	mesh        policy.MeshConfigSpec
	byNode      map[spiffeid.ID][]*nodev1.Registration
	parentOf    map[string]spiffeid.ID // entry ID → node
	revocations []*nodev1.Revocation
	revoked     *ca.RevocationList
	changed     chan struct{}
}

// registry maintains the current view.
type registry struct {
	store store.Store
	td    spiffeid.TrustDomain
	log   *slog.Logger
	mu    sync.Mutex // serializes rebuilds
	cur   atomic.Pointer[view]
}

func newRegistry(st store.Store, td spiffeid.TrustDomain, log *slog.Logger) *registry {
	return &registry{store: st, td: td, log: log.With("component", "registry")}
}

func (r *registry) current() *view { return r.cur.Load() }

// run rebuilds the view whenever the store reports a change.
func (r *registry) run(ctx context.Context) error {
	ch, cancel := r.store.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
			if err := r.refresh(ctx); err != nil {
				// Keep serving the last good view; the next change retries.
				r.log.Error("rebuild registry view; keeping the previous one", "error", err)
			}
		}
	}
}

// refresh rebuilds the view from the store and publishes it.
func (r *registry) refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rev, err := r.store.CurrentRevision(ctx)
	if err != nil {
		return fmt.Errorf("read store revision: %w", err)
	}
	v := &view{revision: rev, byNode: map[spiffeid.ID][]*nodev1.Registration{}, parentOf: map[string]spiffeid.ID{}, changed: make(chan struct{})}

	mc := policy.DefaultMeshConfig()
	if o, err := r.store.GetObject(ctx, policy.KindMeshConfig, "", "default"); err == nil {
		obj, err := policy.Unmarshal(policy.KindMeshConfig, o.Data)
		if err != nil {
			return fmt.Errorf("decode MeshConfig: %w", err)
		}
		mc = obj.(*policy.MeshConfig)
	} else if !isNotFound(err) {
		return fmt.Errorf("read MeshConfig: %w", err)
	}
	v.mesh = mc.Effective()

	objs, err := r.store.ListObjects(ctx, policy.KindWorkload, "")
	if err != nil {
		return fmt.Errorf("list workloads: %w", err)
	}
	for _, o := range objs {
		obj, err := policy.Unmarshal(policy.KindWorkload, o.Data)
		if err != nil {
			r.log.Error("skip undecodable Workload", "namespace", o.Namespace, "name", o.Name, "error", err)
			continue
		}
		w := obj.(*policy.Workload)
		parent, err := spiffeid.FromString(w.Spec.ParentID)
		if err != nil {
			r.log.Error("skip Workload with a bad parentID", "namespace", o.Namespace, "name", o.Name, "error", err)
			continue
		}
		entryID := o.Namespace + "/" + o.Name
		x509TTL, jwtTTL := time.Duration(v.mesh.X509SVIDTTL), time.Duration(v.mesh.JWTSVIDTTL)
		if w.Spec.X509SVIDTTL > 0 {
			x509TTL = time.Duration(w.Spec.X509SVIDTTL)
		}
		if w.Spec.JWTSVIDTTL > 0 {
			jwtTTL = time.Duration(w.Spec.JWTSVIDTTL)
		}
		v.byNode[parent] = append(v.byNode[parent], &nodev1.Registration{
			EntryId:            entryID,
			SpiffeId:           w.Spec.SPIFFEID,
			Selectors:          w.Spec.Selectors,
			X509SvidTtlSeconds: int64(x509TTL / time.Second),
			JwtSvidTtlSeconds:  int64(jwtTTL / time.Second),
			DnsNames:           w.Spec.DNSNames,
			Hint:               w.Spec.Hint,
			Revision:           o.Revision,
		})
		v.parentOf[entryID] = parent
	}

	revs, err := r.store.ListRevocations(ctx)
	if err != nil {
		return fmt.Errorf("list revocations: %w", err)
	}
	var serials []ca.RevokedSerial
	var ids []ca.RevokedID
	for _, rv := range revs {
		v.revocations = append(v.revocations, &nodev1.Revocation{Serial: rv.Serial, SpiffeId: rv.SPIFFEID, RevokedAtUnixNano: rv.RevokedAt.UnixNano()})
		if rv.Serial != "" {
			serials = append(serials, rv.Serial)
			continue
		}
		id, err := spiffeid.FromString(rv.SPIFFEID)
		if err != nil {
			continue
		}
		ids = append(ids, ca.RevokedID{ID: id, RevokedAt: rv.RevokedAt})
	}
	v.revoked = ca.NewRevocationList(serials, ids)

	old := r.cur.Swap(v)
	if old != nil {
		close(old.changed)
	}
	return nil
}

// serialString renders a certificate serial the way revocations store it.
func serialString(n *big.Int) string { return n.String() }
