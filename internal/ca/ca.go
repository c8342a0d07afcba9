package ca

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
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
	// Dir holds the CA's keys, certificates and metadata. It is created
	// with mode 0700 if missing; an existing Dir must not be accessible to
	// group or others. Required.
	Dir string
	// UpstreamCertFile and UpstreamKeyFile, both or neither, make the CA an
	// intermediate under an existing PKI: a PEM certificate chain (signing
	// certificate first, root last; a single certificate is the root) and
	// the PEM private key (PKCS#8, SEC 1 or PKCS#1; ECDSA, RSA or Ed25519)
	// of its first certificate. The key file must have mode 0600.
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
	dir      string
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
}

// New validates cfg, then loads the CA from cfg.Dir or, on first start,
// creates it there: an ECDSA P-256 X.509 CA (a self-signed root valid ten
// years, or an intermediate signed by the upstream key and valid no longer
// than the upstream chain), an ECDSA P-256 JWT signing key and the admin CA.
// Bad configuration fails before anything is written.
func New(cfg Config) (*CA, error) {
	c, err := newFromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	// Whatever a bad configuration can break is checked before the first
	// write: what the directory was made for, and on first start whether
	// the upstream CA can sign our intermediate at all.
	md, err := readMetadata(c.dir)
	if err != nil {
		return nil, err
	}
	if md != nil {
		switch {
		case md.TrustDomain != c.td.Name():
			return nil, fmt.Errorf("%s was created for trust domain %q, not %q", c.dir, md.TrustDomain, c.td.Name())
		case md.Mode != c.mode:
			return nil, fmt.Errorf("%s was created in %s mode, not %s mode", c.dir, md.Mode, c.mode)
		}
	}
	now := c.now()
	var first *authority
	if md == nil {
		if first, err = newAuthority(c.td, c.upstream, now); err != nil {
			return nil, fmt.Errorf("create first authority: %w", err)
		}
	}

	tightened, err := prepareDir(c.dir)
	if err != nil {
		return nil, err
	}
	if tightened {
		c.log.Warn("CA directory was readable by group or others: set its mode to 0700", attrPath, c.dir)
	}
	removeTempFiles(c.dir, c.log)
	admin, created, err := loadOrCreateAdminCA(c.dir, now)
	if err != nil {
		return nil, err
	}
	c.admin = admin
	if created {
		c.log.Info("admin CA created", attrNotAfter, admin.cert.NotAfter)
	}
	if md == nil {
		if err := c.create(first, now); err != nil {
			return nil, fmt.Errorf("create first authority: %w", err)
		}
	} else if err := c.load(md); err != nil {
		return nil, err
	}
	c.warnUnreferenced()
	return c, nil
}

// newFromConfig validates cfg and reads the upstream files; it writes
// nothing.
func newFromConfig(cfg Config) (*CA, error) {
	c := &CA{
		td:     cfg.TrustDomain,
		dir:    cfg.Dir,
		mode:   modeSelfSigned,
		maxTTL: cfg.MaxSVIDTTL,
		now:    cfg.Now,
		log:    cfg.Logger,
	}
	switch {
	case c.td.IsZero():
		return nil, errors.New("trust domain is required")
	case c.dir == "":
		return nil, errors.New("directory is required")
	case (cfg.UpstreamCertFile == "") != (cfg.UpstreamKeyFile == ""):
		return nil, errors.New("upstream certificate and key files go together: set both or neither")
	case c.maxTTL < 0:
		return nil, fmt.Errorf("max SVID TTL %s is negative", c.maxTTL)
	case c.maxTTL == 0:
		c.maxTTL = defaultMaxSVIDTTL
	case c.maxTTL < minTTL:
		return nil, fmt.Errorf("max SVID TTL %s is below the minimum of %s", c.maxTTL, minTTL)
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

// create commits a, the first authority, active at once.
func (c *CA) create(a *authority, now time.Time) error {
	a.meta.State = StateActive
	a.meta.ActivatedAt = now
	if err := c.writeAuthorityFiles(a); err != nil {
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
	defer c.mu.Unlock()
	if err := c.commitLocked(md, a); err != nil {
		// The files stay: if only the directory sync failed, authorities.json
		// may reference them. New reports unreferenced ones.
		return err
	}
	c.log.Info("CA created", attrMode, c.mode, attrAuthority, a.meta.ID,
		attrJWTKeyID, a.meta.JWTKeyID, attrNotAfter, a.cert.NotAfter)
	return nil
}

// load reads every authority of md from disk and checks the whole.
func (c *CA) load(md *metadata) error {
	var (
		loaded           []*authority
		active, prepared int
		seen             = make(map[string]bool)
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
		a, err := c.loadAuthority(m)
		if err != nil {
			return fmt.Errorf("authority %s: %w", m.ID, err)
		}
		loaded = append(loaded, a)
	}
	if active != 1 || prepared > 1 {
		return fmt.Errorf("%s: got %d active and %d prepared authorities, want 1 and at most 1", metadataFile, active, prepared)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyLocked(md, loaded...)
	c.log.Info("CA loaded", attrMode, c.mode, attrAuthority, c.active.meta.ID, attrSequence, c.seq)
	return nil
}

func (c *CA) loadAuthority(m authorityMetadata) (*authority, error) {
	cert, err := readCert(certPath(c.dir, m.ID))
	if err != nil {
		return nil, err
	}
	key, err := readECKey(keyPath(c.dir, m.ID))
	if err != nil {
		return nil, err
	}
	jwtKey, err := readECKey(jwtKeyPath(c.dir, m.ID))
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
// it yet. It returns ErrAlreadyPrepared if an authority is already prepared.
func (c *CA) Prepare() (AuthorityInfo, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if _, ok := c.PreparedSince(); ok {
		return AuthorityInfo{}, ErrAlreadyPrepared
	}
	now := c.now()
	a, err := newAuthority(c.td, c.upstream, now)
	if err != nil {
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", err)
	}
	a.meta.State = StatePrepared
	// Key files are new names: write them without blocking signers.
	if err := c.writeAuthorityFiles(a); err != nil {
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	md := c.metadataLocked()
	md.Authorities = append(md.Authorities, a.meta)
	md.SequenceNumber++
	if err := c.commitLocked(md, a); err != nil {
		// The files stay: if only the directory sync failed, authorities.json
		// may reference them. New reports unreferenced ones.
		return AuthorityInfo{}, fmt.Errorf("prepare authority: %w", err)
	}
	c.log.Info("authority prepared", attrAuthority, a.meta.ID, attrJWTKeyID, a.meta.JWTKeyID,
		attrNotAfter, a.cert.NotAfter, attrSequence, c.seq)
	return a.info(), nil
}

// Activate is rotation step 2: the prepared authority becomes active and
// signs every SVID from now on; the previously active one is retired and
// stays in the bundle until RemoveAfter, the reserved expiry of the last
// SVID it signed. It returns ErrNotPrepared if no authority is prepared.
func (c *CA) Activate() (AuthorityInfo, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	now := c.now()
	// The write lock waits for in-flight signers, so the old authority's
	// reservation is final once we hold it.
	c.mu.Lock()
	defer c.mu.Unlock()
	next, prev := c.prepared, c.active
	if next == nil {
		return AuthorityInfo{}, ErrNotPrepared
	}
	md := c.metadataLocked()
	removeAfter := prev.meta.ReservedNotAfter
	if removeAfter.Before(now) {
		removeAfter = now
	}
	for i := range md.Authorities {
		m := &md.Authorities[i]
		switch m.ID {
		case next.meta.ID:
			m.State, m.ActivatedAt = StateActive, now
		case prev.meta.ID:
			m.State, m.RetiredAt, m.RemoveAfter = StateRetired, now, removeAfter
		}
	}
	if err := c.commitLocked(md); err != nil {
		return AuthorityInfo{}, fmt.Errorf("activate authority %s: %w", next.meta.ID, err)
	}
	c.log.Info("authority activated", attrAuthority, next.meta.ID, attrPrevious, prev.meta.ID,
		attrRemoveAfter, removeAfter)
	return next.info(), nil
}

// Tidy removes the retired authorities whose RemoveAfter has passed, from
// the bundle and from disk. changed reports whether the bundle changed; err
// may be set with changed true if only deleting files failed.
func (c *CA) Tidy() (changed bool, err error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
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
	err = c.commitLocked(md)
	seq := c.seq
	c.mu.Unlock()
	if err != nil {
		return false, fmt.Errorf("tidy authorities: %w", err)
	}
	// authorities.json no longer references them: delete their files.
	var errs []error
	for _, m := range removed {
		c.log.Info("authority removed", attrAuthority, m.ID, attrRemoveAfter, m.RemoveAfter, attrSequence, seq)
		if err := c.removeAuthorityFiles(m.ID); err != nil {
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

// commitLocked persists md and then makes it the in-memory state; added are
// authorities md references that c does not hold yet. On a write error the
// in-memory state is unchanged. c.mu must be held for writing.
func (c *CA) commitLocked(md *metadata, added ...*authority) error {
	if err := writeMetadata(c.dir, md); err != nil {
		return fmt.Errorf("write %s: %w", metadataFile, err)
	}
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

func (c *CA) writeAuthorityFiles(a *authority) error {
	id := a.meta.ID
	err := writeKey(keyPath(c.dir, id), a.key)
	if err == nil {
		err = writeKey(jwtKeyPath(c.dir, id), a.jwtKey)
	}
	if err == nil {
		err = writeCert(certPath(c.dir, id), a.cert)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("write files of authority %s: %w", id, err), c.removeAuthorityFiles(id))
	}
	return nil
}

func (c *CA) removeAuthorityFiles(id string) error {
	var errs []error
	for _, p := range authorityFiles(c.dir, id) {
		errs = append(errs, removeIfExists(p))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return syncDir(c.dir)
}

// warnUnreferenced logs authority files that authorities.json does not
// reference: left by a Prepare that failed to commit, or by a restore of an
// old authorities.json. They are kept, not deleted, as they may hold the
// only copy of a key someone still needs.
func (c *CA) warnUnreferenced() {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		c.log.Warn("could not list the CA directory", attrPath, c.dir, attrError, err)
		return
	}
	c.mu.RLock()
	referenced := make(map[string]bool, 3*len(c.authorities))
	for _, a := range c.authorities {
		for _, p := range authorityFiles(c.dir, a.meta.ID) {
			referenced[filepath.Base(p)] = true
		}
	}
	c.mu.RUnlock()
	for _, e := range entries {
		name := e.Name()
		id, _, _ := strings.Cut(name, ".")
		if validAuthorityID(id) && !referenced[name] {
			c.log.Warn("file of an unknown authority in the CA directory", attrPath, filepath.Join(c.dir, name))
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
