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

	configsyncv1 "github.com/trustmesh/trustmesh/api/configsync/v1"
	nodev1 "github.com/trustmesh/trustmesh/api/node/v1"
	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/configsync"
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
	// world is what the proxies' snapshots are computed from (explain
	// reads it).
	world   *configsync.World
	changed chan struct{}
}

// registry maintains the current view, and publishes the proxies' inputs
// (a configsync.World) to onWorld on every rebuild.
type registry struct {
	store   store.Store
	td      spiffeid.TrustDomain
	log     *slog.Logger
	onWorld func(*configsync.World)
	mu      sync.Mutex // serializes rebuilds
	cur     atomic.Pointer[view]
}

func newRegistry(st store.Store, td spiffeid.TrustDomain, log *slog.Logger, onWorld func(*configsync.World)) *registry {
	return &registry{store: st, td: td, log: log.With("component", "registry"), onWorld: onWorld}
}

func (r *registry) current() *view { return r.cur.Load() }

// run rebuilds the view whenever the store reports a change.
func (r *registry) run(ctx context.Context) error {
	ch, cancel := r.store.Subscribe(store.TopicObjects)
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

	world := &configsync.World{Revision: rev, Mesh: v.mesh}
	workloads, err := listKind[*policy.Workload](ctx, r, policy.KindWorkload, false)
	if err != nil {
		return err
	}
	if world.Services, err = listKind[*policy.Service](ctx, r, policy.KindService, false); err != nil {
		return err
	}
	if world.PeerAuths, err = listKind[*policy.PeerAuthentication](ctx, r, policy.KindPeerAuthentication, false); err != nil {
		return err
	}
	// Authorization objects are read strictly: a policy that cannot be
	// decoded must not silently drop out (a lost DENY would allow), so the
	// whole rebuild fails and the last good view stays.
	if world.AuthzPolicies, err = listKind[*policy.AuthorizationPolicy](ctx, r, policy.KindAuthorizationPolicy, true); err != nil {
		return err
	}
	if world.RequestAuths, err = listKind[*policy.RequestAuthentication](ctx, r, policy.KindRequestAuthentication, true); err != nil {
		return err
	}
	world.Workloads = workloads
	for _, w := range workloads {
		o := w.Metadata
		parent, err := spiffeid.FromString(w.Spec.ParentID)
		if err != nil {
			r.log.Error("skip Workload with a bad parentID", "namespace", o.Namespace, "name", o.Name, "error", err)
			continue
		}
		entryID := o.Namespace + "/" + o.Name
		revision := o.Revision
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
			Revision:           revision,
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
		world.Revocations = append(world.Revocations, &configsyncv1.Revocation{Serial: rv.Serial, SpiffeId: rv.SPIFFEID, RevokedAtUnixNano: rv.RevokedAt.UnixNano()})
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
	v.world = world

	old := r.cur.Swap(v)
	if old != nil {
		close(old.changed)
	}
	if r.onWorld != nil {
		r.onWorld(world)
	}
	return nil
}

// listKind decodes every live object of kind, with metadata.revision and
// creationRevision filled from the store. An undecodable object is skipped
// and logged: one bad row must not stop the mesh's config; unless strict,
// for kinds where skipping an object would weaken security, where it is an
// error.
func listKind[T policy.Object](ctx context.Context, r *registry, kind string, strict bool) ([]T, error) {
	objs, err := r.store.ListObjects(ctx, kind, "")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		obj, err := policy.Unmarshal(kind, o.Data)
		if err != nil && strict {
			return nil, fmt.Errorf("decode %s %s/%s: %w", kind, o.Namespace, o.Name, err)
		}
		if err != nil {
			r.log.Error("skip undecodable object", "kind", kind, "namespace", o.Namespace, "name", o.Name, "error", err)
			continue
		}
		obj.GetMeta().Revision, obj.GetMeta().CreationRevision = o.Revision, o.CreateRevision
		t, ok := obj.(T)
		if !ok {
			continue
		}
		out = append(out, t)
	}
	return out, nil
}

// serialString renders a certificate serial the way revocations store it.
func serialString(n *big.Int) string { return n.String() }
