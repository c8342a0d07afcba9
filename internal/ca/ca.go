package ca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/trustmesh/trustmesh/internal/store"
)

// Errors of the rotation steps, for callers that map them (for example to a
// 409 Conflict in the admin API).
var (
	// ErrAlreadyPrepared is returned by Prepare when an authority is
	// already prepared and not yet activated.
	ErrAlreadyPrepared = errors.New("an authority is already prepared: activate it first")
	// ErrNotPrepared is returned by Activate when no authority is prepared.
	ErrNotPrepared = errors.New("no authority is prepared: prepare one first")
)

const (
	// defaultMaxSVIDTTL is Config.MaxSVIDTTL when it is zero.
	defaultMaxSVIDTTL = 24 * time.Hour
	// bundleRefreshHint is the refresh hint published in the bundle.
	bundleRefreshHint = 5 * time.Minute
	// storageTimeout bounds the storage I/O of one CA operation: New, a
	// rotation step, a reservation, a reload.
	storageTimeout = 30 * time.Second
	// maxLoadAttempts bounds how often a load or reload starts over because
	// the state changed while it was reading it.
	maxLoadAttempts = 4
)

// Log attribute keys.
const (
	attrComponent        = "component"
	attrAuthority        = "authority_id"
	attrPrevious         = "previous_authority_id"
	attrJWTKeyID         = "jwt_key_id"
	attrNotAfter         = "not_after"
	attrRemoveAfter      = "remove_after"
	attrReservedNotAfter = "reserved_not_after"
	attrSequence         = "bundle_sequence"
	attrMode             = "mode"
	attrAdminName        = "admin_name"
	attrRole             = "role"
	attrSerial           = "serial"
	attrPath             = "path"
	attrError            = "error"
)

// Config configures a CA. The zero value of every optional field is a sane
// default.
type Config struct {
	// TrustDomain is the trust domain the CA signs for. Required.
	TrustDomain spiffeid.TrustDomain
	// Dir holds the CA's keys, certificates and metadata, one file each. It
	// is created with mode 0700 if missing; an existing Dir must not be
	// accessible to group or others. Set Dir or Storage.
	Dir string
	// Storage keeps the CA's state instead of Dir: a StoreStorage shares
	// it between the server replicas of one database, private keys sealed
	// with a KEK. Set Dir or Storage.
	Storage Storage
	// UpstreamCertFile and UpstreamKeyFile, both or neither, make the CA an
	// intermediate under an existing PKI: a PEM certificate chain (signing
	// certificate first, root last; a single certificate is the root) and
	// the PEM private key (PKCS#8, SEC 1 or PKCS#1; ECDSA, RSA or Ed25519)
	// of its first certificate. The key file must have mode 0600. Every
	// replica sharing a Storage must use the same upstream CA.
	UpstreamCertFile, UpstreamKeyFile string
	// MaxSVIDTTL caps the TTL of every SVID. Default 24h; at least a minute.
	MaxSVIDTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives lifecycle events. Default: discard.
	Logger *slog.Logger
}

// CA is the trust domain's certificate authority. Its methods are safe for
// concurrent use.
type CA struct {
	td       spiffeid.TrustDomain
	storage  Storage
	dirs     *dirStorage // storage, if it is Config.Dir; nil otherwise
	mode     string
	maxTTL   time.Duration
	now      func() time.Time
	log      *slog.Logger
	upstream *upstream // nil in self-signed mode
	admin    *adminCA

	// opMu serialises Prepare, Activate and Tidy.
	opMu sync.Mutex

	// mu guards the fields below and every authority's meta. Signers hold
	// it for reading; it is held for writing only to commit a new state.
	mu          sync.RWMutex
	authorities []*authority // ordered by CreatedAt
	active      *authority
	prepared    *authority // nil if none
	seq         uint64
	bundle      *spiffebundle.Bundle // never handed out; Bundle clones it
	bundlePEM   []byte
	// mdVersion is the storage version of the metadata the fields above
	// hold: every commit compares and swaps on it. It is
	// store.MustNotExist until the first commit or load.
	mdVersion int64
}

// New validates cfg, then loads the CA from its storage or, on first start,
// creates it there: an ECDSA P-256 X.509 CA (a self-signed root valid ten
// years, or an intermediate signed by the upstream key and valid no longer
// than the upstream chain), an ECDSA P-256 JWT signing key and the admin CA.
// Bad configuration fails before anything is written. If several servers
// create the CA in one storage at once, one set of authorities wins and
// every server uses it.
func New(cfg Config) (*CA, error) {
	c, err := newFromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	// Whatever a bad configuration can break is checked before the first
	// write: what the storage was made for, and on first start whether
	// the upstream CA can sign our intermediate at all.
	md, _, err := readMetadata(ctx, c.storage)
	if err != nil {
		return nil, err
	}
	if md != nil {
		if err := c.checkOrigin(md); err != nil {
			return nil, err
		}
	}
	now := c.now()
	var first *authority
	if md == nil {
		if first, err = newAuthority(c.td, c.upstream, now); err != nil {
			return nil, fmt.Errorf("create first authority: %w", err)
		}
	}

	if c.dirs != nil {
		if err := c.dirs.open(c.log); err != nil {
			return nil, err
		}
	}
	admin, created, err := loadOrCreateAdminCA(ctx, c.storage, now)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	if created {
		c.log.Info("admin CA created", attrNotAfter, admin.cert.NotAfter)
	}
	if md == nil {
		if err := c.create(ctx, first, now); err != nil {
			return nil, fmt.Errorf("create first authority: %w", err)
		}
	} else if err := c.load(ctx); err != nil {
		return nil, err
	}
	c.warnUnreferenced(ctx)
	return c, nil
}

// newFromConfig validates cfg and reads the upstream files; it writes
// nothing.
func newFromConfig(cfg Config) (*CA, error) {
	c := &CA{
		td:     cfg.TrustDomain,
		mode:   modeSelfSigned,
		maxTTL: cfg.MaxSVIDTTL,
		now:    cfg.Now,
		log:    cfg.Logger,
	}
	switch {
	case c.td.IsZero():
		return nil, errors.New("trust domain is required")
	case cfg.Dir == "" && cfg.Storage == nil:
		return nil, errors.New("directory is required (or a storage)")
	case cfg.Dir != "" && cfg.Storage != nil:
		return nil, errors.New("set a directory or a storage, not both")
	case (cfg.UpstreamCertFile == "") != (cfg.UpstreamKeyFile == ""):
		return nil, errors.New("upstream certificate and key files go together: set both or neither")
	case c.maxTTL < 0:
		return nil, fmt.Errorf("max SVID TTL %s is negative", c.maxTTL)
	case c.maxTTL == 0:
		c.maxTTL = defaultMaxSVIDTTL
	case c.maxTTL < minTTL:
		return nil, fmt.Errorf("max SVID TTL %s is below the minimum of %s", c.maxTTL, minTTL)
	}
	if cfg.Storage != nil {
		c.storage = cfg.Storage
	} else {
		c.dirs = newDirStorage(cfg.Dir)
		c.storage = c.dirs
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With(attrComponent, "ca")
	if cfg.UpstreamCertFile != "" {
		up, err := loadUpstream(cfg.UpstreamCertFile, cfg.UpstreamKeyFile, c.now())
		if err != nil {
			return nil, err
		}
		c.upstream, c.mode = up, modeUpstream
	}
	return c, nil
}

// checkOrigin checks that md was written for this CA's trust domain and
// mode, so that a storage made for one is never silently reused by the
// other.
func (c *CA) checkOrigin(md *metadata) error {
	switch {
	case md.TrustDomain != c.td.Name():
		return fmt.Errorf("%s was created for trust domain %q, not %q", c.storage.Locate(metadataFile), md.TrustDomain, c.td.Name())
	case md.Mode != c.mode:
		return fmt.Errorf("%s was created in %s mode, not %s mode", c.storage.Locate(metadataFile), md.Mode, c.mode)
	}
	return nil
}

// checkMetadata checks md's authority list: valid, distinct IDs, known
// states, one active authority and at most one prepared.
func checkMetadata(md *metadata) error {
	var (
		active, prepared int
		seen             = make(map[string]bool, len(md.Authorities))
	)
	for _, m := range md.Authorities {
		if !validAuthorityID(m.ID) || seen[m.ID] {
			return fmt.Errorf("%s: invalid or duplicate authority ID %q", metadataFile, m.ID)
		}
		seen[m.ID] = true
		switch m.State {
		case StateActive:
			active++
		case StatePrepared:
			prepared++
		case StateRetired:
		default:
			return fmt.Errorf("%s: authority %s has unknown state %q", metadataFile, m.ID, m.State)
		}
	}
	if active != 1 || prepared > 1 {
		return fmt.Errorf("%s: got %d active and %d prepared authorities, want 1 and at most 1", metadataFile, active, prepared)
	}
	return nil
}

// create commits a, the first authority, active at once. The metadata is
// created only if it does not exist: if another server created the CA
// first, a's files are removed and the CA loads what that server wrote.
func (c *CA) create(ctx context.Context, a *authority, now time.Time) error {
	a.meta.State = StateActive
	a.meta.ActivatedAt = now
	if err := c.writeAuthorityFiles(ctx, a); err != nil {
		return err
	}
	md := &metadata{
		Version:        metadataVersion,
		TrustDomain:    c.td.Name(),
		Mode:           c.mode,
		SequenceNumber: 1,
		Authorities:    []authorityMetadata{a.meta},
	}
	c.mu.Lock()
	err := c.commitLocked(ctx, md, a) // c.mdVersion is store.MustNotExist
	c.mu.Unlock()
	if errors.Is(err, ErrConcurrentChange) {
		// Nothing references a: another server's authorities won.
		if err := c.removeAuthorityFiles(ctx, a.meta.ID); err != nil {
			c.log.Warn("could not remove the files of an unused authority", attrAuthority, a.meta.ID, attrError, err)
		}
		c.log.Info("CA created by another server at the same time: using its authorities")
		return c.load(ctx)
	}
	if err != nil {
		// The files stay: if only the directory sync failed, authorities.json
		// may reference them. New reports unreferenced ones.
		return err
	}
	c.log.Info("CA created", attrMode, c.mode, attrAuthority, a.meta.ID,
		attrJWTKeyID, a.meta.JWTKeyID, attrNotAfter, a.cert.NotAfter)
	return nil
}

// load reads the whole state from storage and makes it the CA's.
func (c *CA) load(ctx context.Context) error {
	md, version, added, err := c.fetch(ctx, nil, store.MustNotExist)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(md, added...)
	c.mdVersion = version
	c.log.Info("CA loaded", attrMode, c.mode, attrAuthority, c.active.meta.ID, attrSequence, c.seq)
	return nil
}

// fetch reads and checks the metadata, then loads every authority it
// references that is not in held (which may be nil). It returns a nil md if
// the metadata's version is still unchanged. An authority whose files are
// gone while the metadata changed since it was read was tidied away by
// another server in between: fetch then starts over.
func (c *CA) fetch(ctx context.Context, held map[string]*authority, unchanged int64) (_ *metadata, version int64, added []*authority, _ error) {
attempts:
	for attempt := 1; ; attempt++ {
		md, version, err := readMetadata(ctx, c.storage)
		switch {
		case err != nil:
			return nil, 0, nil, err
		case md == nil:
			return nil, 0, nil, fmt.Errorf("%s: %w", c.storage.Locate(metadataFile), fs.ErrNotExist)
		case version == unchanged:
			return nil, version, nil, nil
		}
		if err := c.checkOrigin(md); err != nil {
			return nil, 0, nil, err
		}
		if err := checkMetadata(md); err != nil {
			return nil, 0, nil, err
		}
		added = added[:0]
		for _, m := range md.Authorities {
			if held[m.ID] != nil {
				continue
			}
			a, err := c.loadAuthority(ctx, m)
			if errors.Is(err, fs.ErrNotExist) && attempt < maxLoadAttempts {
				if _, now, rerr := c.storage.Read(ctx, metadataFile, ClassPrivate); rerr == nil && now != version {
					continue attempts
				}
			}
			if err != nil {
				return nil, 0, nil, fmt.Errorf("authority %s: %w", m.ID, err)
			}
			added = append(added, a)
		}
		return md, version, added, nil
	}
}

func (c *CA) loadAuthority(ctx context.Context, m authorityMetadata) (*authority, error) {
	cert, err := readCertFrom(ctx, c.storage, certFileName(m.ID))
	if err != nil {
		return nil, err
	}
	key, err := readECKeyFrom(ctx, c.storage, keyFileName(m.ID))
	if err != nil {
		return nil, err
	}
	jwtKey, err := readECKeyFrom(ctx, c.storage, jwtKeyFileName(m.ID))
	if err != nil {
		return nil, err
	}
	a := &authority{meta: m, cert: cert, key: key, jwtKey: jwtKey}
	if err := a.check(c.td, c.upstream); err != nil {
		return nil, err
	}
	if err := a.init(c.upstream); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads the CA's state from its storage, so that a server
// replica follows what another one changed: an authority prepared,
// activated or removed, a reservation moved. It loads the keys and
// certificates of authorities it has not seen yet. changed reports whether
// the bundle or the active authority changed. It is cheap when nothing
// changed (one read of the metadata). On error the CA keeps its state.
func (c *CA) Reload() (changed bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	if changed, err = c.reload(ctx); err != nil {
		return false, fmt.Errorf("reload CA: %w", err)
	}
	return changed, nil
}

func (c *CA) reload(ctx context.Context) (changed bool, err error) {
	for range maxLoadAttempts {
		c.mu.RLock()
		from := c.mdVersion
		held := make(map[string]*authority, len(c.authorities))
		for _, a := range c.authorities {
			held[a.meta.ID] = a
		}
		c.mu.RUnlock()

		md, version, added, err := c.fetch(ctx, held, from)
		if err != nil {
			return false, err
		}
		if md == nil {
			return false, nil
		}
		c.mu.Lock()
		if c.mdVersion != from {
			// A commit or another reload went first: what we read may be
			// older than what it holds.
			c.mu.Unlock()
			continue
		}
		seq, active := c.seq, c.active
		c.applyLocked(md, added...)
		c.mdVersion = version
		changed = c.seq != seq || c.active != active
		activeID, newSeq := c.active.meta.ID, c.seq
		c.mu.Unlock()
		level := slog.LevelDebug
		if changed {
			level = slog.LevelInfo
		}
		c.log.Log(ctx, level, "CA state reloaded", attrAuthority, activeID, attrSequence, newSeq)
		return changed, nil
	}
	return false, ErrConcurrentChange
}

// afterConflict reloads the state if err says another server changed it
// first, so that the caller's next attempt starts from there. It returns
// err, joined with the reload's error if that failed.
func (c *CA) afterConflict(ctx context.Context, err error) error {
	if !errors.Is(err, ErrConcurrentChange) {
		return err
	}
	if _, rerr := c.reload(ctx); rerr != nil {
		return errors.Join(err, fmt.Errorf("reload: %w", rerr))
	}
	return err
}

// TrustDomain returns the trust domain the CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain {
	return c.td
}

// Bundle returns a copy of the trust bundle: the X.509 authorities (every
// authority's CA certificate, or the upstream root in upstream mode) and the
// JWT public key of every authority not yet removed, keyed by key ID, with a
// refresh hint and a sequence number that increases on every change.
func (c *CA) Bundle() *spiffebundle.Bundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bundle.Clone()
}

// BundlePEM returns the bundle's X.509 authorities as PEM.
func (c *CA) BundlePEM() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.bundlePEM)
}

// Authorities describes every authority not yet removed, oldest first.
func (c *CA) Authorities() []AuthorityInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	infos := make([]AuthorityInfo, 0, len(c.authorities))
	for _, a := range c.authorities {
		infos = append(infos, a.info())
	}
	return infos
}

// PreparedSince returns when the prepared authority was created, and false
// if none is prepared.
func (c *CA) PreparedSince() (time.Time, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.prepared == nil {
		return time.Time{}, false
	}
	return c.prepared.meta.CreatedAt, true
}

// Prepare is rotation step 1: it creates a new authority (X.509 CA key and
// certificate, JWT key) and publishes it in the bundle without signing with
// it yet. It returns ErrAlreadyPrepared if an authority is already prepared,
// and an error wrapping ErrConcurrentChange (after reloading the state) if
// another server changed the CA's state first.
func (c *CA) Prepare() (AuthorityInfo, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if _, ok := c.PreparedSince(); ok {
		return AuthorityInfo{}, ErrAlreadyPrepared
	}
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	now := c.now()
	a, err := newAuthority(c.td, c.upstream, now)
	if err != nil {
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", err)
	}
	a.meta.State = StatePrepared
	// Key files are new names: write them without blocking signers.
	if err := c.writeAuthorityFiles(ctx, a); err != nil {
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", err)
	}
	c.mu.Lock()
	if c.prepared != nil {
		// A reload brought in another server's prepared authority.
		c.mu.Unlock()
		return AuthorityInfo{}, errors.Join(ErrAlreadyPrepared, c.removeAuthorityFiles(ctx, a.meta.ID))
	}
	md := c.metadataLocked()
	md.Authorities = append(md.Authorities, a.meta)
	md.SequenceNumber++
	err = c.commitLocked(ctx, md, a)
	info, seq := a.info(), c.seq
	c.mu.Unlock()
	if errors.Is(err, ErrConcurrentChange) {
		// Nothing references the new authority: its files go.
		err = errors.Join(err, c.removeAuthorityFiles(ctx, info.ID))
	}
	if err != nil {
		// Otherwise the files stay: if only the directory sync failed,
		// authorities.json may reference them. New reports unreferenced ones.
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", c.afterConflict(ctx, err))
	}
	c.log.Info("authority prepared", attrAuthority, info.ID, attrJWTKeyID, info.JWTKeyID,
		attrNotAfter, info.NotAfter, attrSequence, seq)
	return info, nil
}

// Activate is rotation step 2: the prepared authority becomes active and
// signs every SVID from now on; the previously active one is retired and
// stays in the bundle until RemoveAfter, the reserved expiry of the last
// SVID it signed. It returns ErrNotPrepared if no authority is prepared, and
// an error wrapping ErrConcurrentChange (after reloading the state) if
// another server changed the CA's state first.
func (c *CA) Activate() (AuthorityInfo, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	now := c.now()
	// The write lock waits for in-flight signers, so the old authority's
	// reservation is final once we hold it (on this server; another
	// server's reservation write makes the commit below fail).
	c.mu.Lock()
	next, prev := c.prepared, c.active
	if next == nil {
		c.mu.Unlock()
		return AuthorityInfo{}, ErrNotPrepared
	}
	nextID, prevID := next.meta.ID, prev.meta.ID
	md := c.metadataLocked()
	removeAfter := prev.meta.ReservedNotAfter
	if removeAfter.Before(now) {
		removeAfter = now
	}
	for i := range md.Authorities {
		m := &md.Authorities[i]
		switch m.ID {
		case nextID:
			m.State, m.ActivatedAt = StateActive, now
		case prevID:
			m.State, m.RetiredAt, m.RemoveAfter = StateRetired, now, removeAfter
		}
	}
	err := c.commitLocked(ctx, md)
	info := next.info()
	c.mu.Unlock()
	if err != nil {
		return AuthorityInfo{}, fmt.Errorf("activate authority %s: %w", nextID, c.afterConflict(ctx, err))
	}
	c.log.Info("authority activated", attrAuthority, nextID, attrPrevious, prevID,
		attrRemoveAfter, removeAfter)
	return info, nil
}

// Tidy removes the retired authorities whose RemoveAfter has passed, from
// the bundle and from storage. changed reports whether the bundle changed;
// err may be set with changed true if only deleting files failed. It
// returns an error wrapping ErrConcurrentChange (after reloading the state)
// if another server changed the CA's state first.
func (c *CA) Tidy() (changed bool, err error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storageTimeout)
	defer cancel()
	now := c.now()
	c.mu.Lock()
	md := c.metadataLocked()
	var removed []authorityMetadata
	md.Authorities = slices.DeleteFunc(md.Authorities, func(m authorityMetadata) bool {
		if m.State == StateRetired && !now.Before(m.RemoveAfter) {
			removed = append(removed, m)
			return true
		}
		return false
	})
	if len(removed) == 0 {
		c.mu.Unlock()
		return false, nil
	}
	md.SequenceNumber++
	err = c.commitLocked(ctx, md)
	seq := c.seq
	c.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("tidy authorities: %w", c.afterConflict(ctx, err))
	}
	// authorities.json no longer references them: delete their files.
	var errs []error
	for _, m := range removed {
		c.log.Info("authority removed", attrAuthority, m.ID, attrRemoveAfter, m.RemoveAfter, attrSequence, seq)
		if err := c.removeAuthorityFiles(ctx, m.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return true, fmt.Errorf("tidy authorities: delete files: %w", err)
	}
	return true, nil
}

// metadataLocked returns a copy of the current metadata. c.mu must be held.
func (c *CA) metadataLocked() *metadata {
	md := &metadata{
		Version:        metadataVersion,
		TrustDomain:    c.td.Name(),
		Mode:           c.mode,
		SequenceNumber: c.seq,
		Authorities:    make([]authorityMetadata, 0, len(c.authorities)+1),
	}
	for _, a := range c.authorities {
		md.Authorities = append(md.Authorities, a.meta)
	}
	return md
}

// commitLocked persists md, if the stored metadata is still the version c
// holds, and then makes it the in-memory state; added are authorities md
// references that c does not hold yet. On a write error the in-memory state
// is unchanged; the error wraps ErrConcurrentChange if another server wrote
// the metadata first. c.mu must be held for writing.
func (c *CA) commitLocked(ctx context.Context, md *metadata, added ...*authority) error {
	b, err := encodeMetadata(md)
	if err != nil {
		return fmt.Errorf("write %s: %w", metadataFile, err)
	}
	version, err := c.storage.Write(ctx, metadataFile, b, ClassPrivate, c.mdVersion)
	if err != nil {
		return fmt.Errorf("write %s: %w", metadataFile, err)
	}
	c.mdVersion = version
	c.applyLocked(md, added...)
	return nil
}

// applyLocked makes md the in-memory state and rebuilds the bundle. Every
// authority md references must be in c.authorities or added. c.mu must be
// held for writing (or c not yet shared).
func (c *CA) applyLocked(md *metadata, added ...*authority) {
	byID := make(map[string]*authority, len(c.authorities)+len(added))
	for _, a := range c.authorities {
		byID[a.meta.ID] = a
	}
	for _, a := range added {
		byID[a.meta.ID] = a
	}
	c.authorities = c.authorities[:0:0]
	c.active, c.prepared = nil, nil
	for _, m := range md.Authorities {
		a := byID[m.ID]
		a.meta = m
		c.authorities = append(c.authorities, a)
		switch m.State {
		case StateActive:
			c.active = a
		case StatePrepared:
			c.prepared = a
		}
	}
	slices.SortStableFunc(c.authorities, func(x, y *authority) int {
		return x.meta.CreatedAt.Compare(y.meta.CreatedAt)
	})
	c.seq = md.SequenceNumber

	b := spiffebundle.New(c.td)
	if c.upstream != nil {
		b.AddX509Authority(c.upstream.root)
	}
	for _, a := range c.authorities {
		if c.upstream == nil {
			b.AddX509Authority(a.cert)
		}
		// The key ID is never empty, the only error AddJWTAuthority has.
		_ = b.AddJWTAuthority(a.meta.JWTKeyID, a.jwtKey.Public())
	}
	b.SetRefreshHint(bundleRefreshHint)
	b.SetSequenceNumber(c.seq)
	c.bundle = b
	c.bundlePEM = encodeCertPEM(b.X509Authorities()...)
}

// writeAuthorityFiles creates a's key, JWT key and certificate, in that
// order, so that a certificate is never without its key. On error it
// removes those it wrote.
func (c *CA) writeAuthorityFiles(ctx context.Context, a *authority) error {
	id := a.meta.ID
	var written []string
	write := func(name string, f func() error) error {
		if err := f(); err != nil {
			return err
		}
		written = append(written, name)
		return nil
	}
	err := write(keyFileName(id), func() error { return writeKeyTo(ctx, c.storage, keyFileName(id), a.key) })
	if err == nil {
		err = write(jwtKeyFileName(id), func() error { return writeKeyTo(ctx, c.storage, jwtKeyFileName(id), a.jwtKey) })
	}
	if err == nil {
		err = write(certFileName(id), func() error { return writeCertTo(ctx, c.storage, certFileName(id), a.cert) })
	}
	if err != nil {
		errs := []error{fmt.Errorf("write files of authority %s: %w", id, err)}
		for _, name := range written {
			errs = append(errs, c.storage.Remove(ctx, name))
		}
		return errors.Join(errs...)
	}
	return nil
}

// removeAuthorityFiles removes the files of authority id. Call it only once
// the metadata no longer references id, or never did.
func (c *CA) removeAuthorityFiles(ctx context.Context, id string) error {
	var errs []error
	for _, name := range authorityFiles(id) {
		errs = append(errs, c.storage.Remove(ctx, name))
	}
	return errors.Join(errs...)
}

// warnUnreferenced logs authority files that authorities.json does not
// reference: left by a Prepare that failed to commit, or by a restore of an
// old authorities.json (or, with a shared storage, written by a Prepare of
// another server that has not committed yet). They are kept, not deleted,
// as they may hold the only copy of a key someone still needs.
func (c *CA) warnUnreferenced(ctx context.Context) {
	names, err := c.storage.List(ctx)
	if err != nil {
		c.log.Warn("could not list the CA storage", attrPath, c.storage.Locate(""), attrError, err)
		return
	}
	c.mu.RLock()
	referenced := make(map[string]bool, 3*len(c.authorities))
	for _, a := range c.authorities {
		for _, name := range authorityFiles(a.meta.ID) {
			referenced[name] = true
		}
	}
	c.mu.RUnlock()
	msg := "file of an unknown authority in the CA directory"
	if c.dirs == nil {
		msg = "value of an unknown authority in the CA storage"
	}
	for _, name := range names {
		id, _, _ := strings.Cut(name, ".")
		if validAuthorityID(id) && !referenced[name] {
			c.log.Warn(msg, attrPath, c.storage.Locate(name))
		}
	}
}

// removeTempFiles deletes temporary files left by an interrupted atomic
// write; they may hold key material.
func removeTempFiles(dir string, log *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*")) // atomicfile's pattern
	for _, p := range matches {
		if err := os.Remove(p); err != nil {
			log.Warn("could not remove temporary file", attrPath, p, attrError, err)
		}
	}
}

// validAuthorityID reports whether id looks like an authority ID (40 lowercase
// hex digits), so that it is safe in a file name.
func validAuthorityID(id string) bool {
	return len(id) == 40 && strings.Trim(id, "0123456789abcdef") == ""
}
