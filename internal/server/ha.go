package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/configsync"
	"github.com/trustmesh/trustmesh/internal/kek"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/postgres"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

// Several replicas of a server share one PostgreSQL database (see
// ARCHITECTURE.md, "Scale path"). What one replica writes reaches the others
// through the store's change notifications; what only one may do at a time
// (CA rotation steps, audit checkpoint signing) runs on an elected replica;
// and each replica publishes the proxies connected to it (its presence) so
// that every replica's snapshots carry every serving proxy's endpoints.

const (
	// presenceTTL is how long a replica's presence outlives its last
	// renewal: long enough for its proxies to reconnect elsewhere after it
	// dies (their data planes keep serving meanwhile, so their endpoints
	// stay listed), short enough that a proxy that vanished with it leaves
	// the others' snapshots soon.
	presenceTTL = 15 * time.Second
	// presenceRenew is how often a replica renews an unchanged presence.
	presenceRenew = 5 * time.Second
	// electionRetry spaces campaigns after a failed one (database down).
	electionRetry = time.Second

	// Singleton roles, each campaigned for separately (a role is one
	// database lock, and one replica may hold several).
	roleCA          = "ca-lifecycle"
	roleCheckpoints = "audit-checkpoints"
	roleSweeps      = "expiry-sweeps"

	// sweepInterval spaces the expiry sweeps; presences are pruned
	// sweepGrace after they expired (they are ignored from expiry on).
	sweepInterval = time.Minute
	sweepGrace    = time.Minute

	// trustDomainBlob records a shared database's trust domain.
	trustDomainBlob = "cluster/trust-domain"
)

// openStore opens the store --store names: the SQLite file in the data
// dir by default, sqlite://PATH, or postgres://… (shared reports a database
// several replicas may share).
func openStore(ctx context.Context, dataDir, spec string) (st store.Store, shared bool, err error) {
	switch {
	case spec == "":
		st, err = sqlite.Open(ctx, filepath.Join(dataDir, "trustmesh.db"))
	case strings.HasPrefix(spec, "sqlite://"):
		path := strings.TrimPrefix(spec, "sqlite://")
		if path == "" {
			return nil, false, errors.New("--store sqlite://PATH: the path is empty (e.g. sqlite:///var/lib/trustmesh/trustmesh.db)")
		}
		st, err = sqlite.Open(ctx, path)
	case isSharedStore(spec):
		st, err = postgres.Open(ctx, spec)
		shared = true
	default:
		return nil, false, fmt.Errorf("--store %q: want sqlite://PATH or postgres://USER@HOST:PORT/DATABASE", redactDSN(spec))
	}
	if err != nil {
		return nil, false, fmt.Errorf("open store: %w", err)
	}
	return st, shared, nil
}

// redactDSN hides a password in a store URL for messages.
func redactDSN(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		if i := strings.Index(spec, "@"); i >= 0 {
			return "…" + spec[i:]
		}
		return spec
	}
	return u.Redacted()
}

// sharedTrustDomain reads or records the trust domain of a shared
// database, and keeps the data dir's record in step with it.
func sharedTrustDomain(ctx context.Context, st store.Store, dir, flag string) (spiffeid.TrustDomain, error) {
	var stored string
	for attempt := 0; stored == ""; attempt++ {
		b, err := st.GetBlob(ctx, trustDomainBlob)
		switch {
		case err == nil:
			stored = strings.TrimSpace(string(b.Data))
		case errors.Is(err, store.ErrNotFound) && attempt == 0:
			if flag == "" {
				return spiffeid.TrustDomain{}, errors.New("--trust-domain is required on the first start of a new database (e.g. --trust-domain example.org)")
			}
			td, err := spiffeid.TrustDomainFromString(flag)
			if err != nil {
				return spiffeid.TrustDomain{}, fmt.Errorf("--trust-domain %q: %w", flag, err)
			}
			if _, err := st.PutBlob(ctx, trustDomainBlob, []byte(td.Name()), store.MustNotExist); err != nil && !errors.Is(err, store.ErrConflict) {
				return spiffeid.TrustDomain{}, fmt.Errorf("record trust domain: %w", err)
			}
			// Created, or another replica created it first: read it back.
		case err != nil:
			return spiffeid.TrustDomain{}, fmt.Errorf("read trust domain: %w", err)
		}
	}
	if flag != "" && flag != stored {
		return spiffeid.TrustDomain{}, fmt.Errorf("--trust-domain %q does not match %q recorded in the database; a trust domain cannot change after the CA exists", flag, stored)
	}
	local, err := resolveTrustDomain(dir, stored)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("data dir %s: %w", dir, err)
	}
	return local, nil
}

// replicaID names this replica's presence: unique among replicas that run
// at the same time (host and node API address), stable across a restart on
// the same address so the restarted replica replaces its old presence.
func replicaID(nodeAddr string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + "/" + nodeAddr
}

// runPresence publishes this replica's ready proxies and hands the other
// replicas' to the hub, until ctx is cancelled; then it withdraws the
// presence so the others drop its proxies at once.
func (s *Server) runPresence(ctx context.Context) error {
	changes, cancel := s.store.Subscribe(store.TopicPresence)
	defer cancel()
	tick := time.NewTicker(presenceRenew / 5)
	defer tick.Stop()
	var (
		published   []byte
		publishedAt time.Time
		failing     bool
	)
	for {
		now := s.cfg.Now()
		err := func() error {
			data, err := configsync.EncodePresence(s.push.LocalReady())
			if err != nil {
				return fmt.Errorf("encode presence: %w", err)
			}
			if !bytes.Equal(data, published) || now.Sub(publishedAt) >= presenceRenew {
				if err := s.store.PutPresence(ctx, store.Presence{Replica: s.replica, Data: data, ExpiresAt: now.Add(presenceTTL)}); err != nil {
					return fmt.Errorf("publish presence: %w", err)
				}
				published, publishedAt = data, now
			}
			ps, err := s.store.ListPresence(ctx, now)
			if err != nil {
				return fmt.Errorf("read other replicas' presence: %w", err)
			}
			var (
				remote  []configsync.ProxyInfo
				listing []remoteProxy
			)
			for _, p := range ps {
				if p.Replica == s.replica {
					continue
				}
				infos, err := configsync.DecodePresence(p.Data, s.td)
				if err != nil {
					// One bad replica must not hide the others' proxies.
					s.log.Error("ignoring a replica's presence", "replica", p.Replica, "error", err)
					continue
				}
				remote = append(remote, infos...)
				for _, info := range infos {
					listing = append(listing, remoteProxy{replica: p.Replica, info: info})
				}
			}
			s.push.SetRemote(remote)
			s.remoteMu.Lock()
			s.remote = listing
			s.remoteMu.Unlock()
			return nil
		}()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			// Logged once per outage; the last good remote set stays.
			s.log.Error("replica presence", "error", err)
			failing = true
		case err == nil && failing:
			s.log.Info("replica presence restored")
			failing = false
		}
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			if err := s.store.DeletePresence(dctx, s.replica); err != nil {
				s.log.Warn("withdraw presence; the other replicas drop it when it expires", "error", err, "expires_in", presenceTTL)
			}
			return nil
		case <-changes:
		case <-s.push.LocalChanges():
		case <-tick.C:
		}
	}
}

// runElected runs work whenever this replica holds role, campaigning again
// when the role is lost, until ctx is cancelled. work must return when its
// context is cancelled.
func (s *Server) runElected(ctx context.Context, role string, work func(ctx context.Context)) {
	s.metrics.singleton.WithLabelValues(role).Set(0)
	for ctx.Err() == nil {
		held, release, err := s.store.Elect(ctx, role)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("campaign for singleton role failed; retrying", "role", role, "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(electionRetry):
			}
			continue
		}
		if s.shared {
			s.log.Info("elected for singleton work", "role", role, "replica", s.replica)
		}
		s.metrics.singleton.WithLabelValues(role).Set(1)
		work(held)
		s.metrics.singleton.WithLabelValues(role).Set(0)
		release()
		if ctx.Err() == nil {
			s.log.Warn("lost singleton role; campaigning again", "role", role, "replica", s.replica)
		}
	}
}

// isSharedStore reports whether --store names a database several replicas
// may share.
func isSharedStore(spec string) bool {
	return strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://")
}

// checkKEKFlag: --kek-file is required with a shared store, and refused
// without one (it would protect nothing, and an operator who gave it
// expects it to). Checked before anything is created.
func checkKEKFlag(cfg Config) error {
	if cfg.Store != nil {
		return nil
	}
	switch shared := isSharedStore(cfg.StoreURL); {
	case shared && cfg.KEKFile == "":
		return errors.New("--kek-file is required with a PostgreSQL store: the CA keys in a shared database are sealed with it (create one with trustmesh kek generate --out FILE and give every replica the same file)")
	case !shared && cfg.KEKFile != "":
		return errors.New("--kek-file is only used with a PostgreSQL store (--store postgres://…); with SQLite the CA keys are files with mode 0600 in --data-dir")
	}
	return nil
}

// loadKEK loads --kek-file for a shared store.
func (s *Server) loadKEK() error {
	if !s.shared {
		return nil
	}
	k, err := kek.Load(s.cfg.KEKFile)
	if err != nil {
		return fmt.Errorf("--kek-file: %w", err)
	}
	s.kek = k
	s.log.Info("loaded key-encryption key", "kek_id", k.ID())
	return nil
}

// caBlobPrefix is where a shared store keeps the CA's files as blobs.
const caBlobPrefix = "ca/"

// sharedCAStorage points the CA at the shared store, its keys sealed with
// the KEK, instead of DATA_DIR/ca.
func (s *Server) sharedCAStorage(cfg *ca.Config) error {
	st, err := ca.NewStoreStorage(s.store, caBlobPrefix, s.kek)
	if err != nil {
		return fmt.Errorf("CA storage: %w", err)
	}
	cfg.Dir, cfg.Storage = "", st
	return nil
}

// remoteProxy is a proxy connected to another replica, for get proxies.
type remoteProxy struct {
	replica string
	info    configsync.ProxyInfo
}

// remoteProxies returns the proxies other replicas last published.
func (s *Server) remoteProxies() []remoteProxy {
	s.remoteMu.Lock()
	defer s.remoteMu.Unlock()
	return slices.Clone(s.remote)
}

// runSweeps removes, on the elected replica, what has expired for good:
// the presences of replicas that stopped without withdrawing theirs.
func (s *Server) runSweeps(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		if n, err := s.store.PrunePresence(ctx, s.cfg.Now().Add(-sweepGrace)); err != nil && ctx.Err() == nil {
			s.log.Warn("prune expired replica presences", "error", err)
		} else if n > 0 {
			s.log.Info("pruned expired replica presences", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
