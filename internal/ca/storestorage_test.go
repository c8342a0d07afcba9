package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/kek"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
)

const testPrefix = "ca/"

// openTestStore opens a real SQLite store in a temporary directory: the
// database that the CA instances of a test share, as server replicas do.
func openTestStore(t *testing.T) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "trustmesh.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newTestKEK(t *testing.T) *kek.KEK {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kek")
	if err := kek.Generate(path); err != nil {
		t.Fatal(err)
	}
	k, err := kek.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newTestStoreStorage(t *testing.T, st store.Store, k *kek.KEK) *StoreStorage {
	t.Helper()
	s, err := NewStoreStorage(st, testPrefix, k)
	if err != nil {
		t.Fatalf("NewStoreStorage: %v", err)
	}
	return s
}

func storeConfig(s Storage, clock *fakeClock) Config {
	return Config{TrustDomain: testTD, Storage: s, Now: clock.Now}
}

// replicas returns n CAs on one store and one KEK, created one after the
// other.
func replicas(t *testing.T, n int) (store.Store, *fakeClock, []*CA) {
	t.Helper()
	st := openTestStore(t)
	k := newTestKEK(t)
	clock := newClock()
	var cs []*CA
	for range n {
		cs = append(cs, mustNew(t, storeConfig(newTestStoreStorage(t, st, k), clock)))
	}
	return st, clock, cs
}

func blobNames(t *testing.T, st store.Store) []string {
	t.Helper()
	blobs, err := st.ListBlobs(t.Context(), testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range blobs {
		names = append(names, strings.TrimPrefix(b.Name, testPrefix))
	}
	return names
}

// wantBlobNames lists the blobs of a CA whose authorities are ids.
func wantBlobNames(ids ...string) []string {
	names := []string{metadataFile, adminCertFile, adminKeyFile}
	for _, id := range ids {
		names = append(names, authorityFiles(id)...)
	}
	slices.Sort(names)
	return names
}

func authorityIDs(c *CA) []string {
	var ids []string
	for _, a := range c.Authorities() {
		ids = append(ids, a.ID)
	}
	return ids
}

func storedMetadata(t *testing.T, st store.Store) *metadata {
	t.Helper()
	b, err := st.GetBlob(t.Context(), testPrefix+metadataFile)
	if err != nil {
		t.Fatal(err)
	}
	md, err := parseMetadata(b.Data)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// barrier makes n parties wait for each other at named points.
type barrier struct {
	n       int
	mu      sync.Mutex
	arrived map[string]int
	release map[string]chan struct{}
}

func newBarrier(n int) *barrier {
	return &barrier{n: n, arrived: make(map[string]int), release: make(map[string]chan struct{})}
}

// wait blocks until n parties have called wait(point), or ctx is done.
func (b *barrier) wait(ctx context.Context, point string) {
	b.mu.Lock()
	ch := b.release[point]
	if ch == nil {
		ch = make(chan struct{})
		b.release[point] = ch
	}
	b.arrived[point]++
	if b.arrived[point] == b.n {
		close(ch)
	}
	b.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// gatedStorage wraps a real Storage so that the first create of each of
// the gated names waits until every replica is about to create it: the
// creations race for sure, instead of by chance.
type gatedStorage struct {
	Storage
	ctx     context.Context
	barrier *barrier
	gated   map[string]bool
	mu      sync.Mutex
	passed  map[string]bool
}

func (g *gatedStorage) Write(ctx context.Context, name string, data []byte, class Class, expectVersion int64) (int64, error) {
	g.mu.Lock()
	wait := expectVersion == store.MustNotExist && g.gated[name] && !g.passed[name]
	g.passed[name] = true
	g.mu.Unlock()
	if wait {
		g.barrier.wait(g.ctx, name)
	}
	return g.Storage.Write(ctx, name, data, class, expectVersion)
}

func TestStoreStorageCreateRace(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		gated bool
	}{
		{"two replicas, forced to race", 2, true},
		{"four replicas, racing by chance", 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openTestStore(t)
			k := newTestKEK(t)
			clock := newClock()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			b := newBarrier(tt.n)

			var logs syncBuffer
			logger := slog.New(slog.NewJSONHandler(&logs, nil))
			cs := make([]*CA, tt.n)
			errs := make([]error, tt.n)
			var wg sync.WaitGroup
			for i := range tt.n {
				var s Storage = newTestStoreStorage(t, st, k)
				if tt.gated {
					s = &gatedStorage{
						Storage: s, ctx: ctx, barrier: b,
						gated:  map[string]bool{metadataFile: true, adminKeyFile: true},
						passed: make(map[string]bool),
					}
				}
				cfg := storeConfig(s, clock)
				cfg.Logger = logger
				wg.Go(func() { cs[i], errs[i] = New(cfg) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("replica %d: New: %v", i, err)
				}
			}
			if ctx.Err() != nil {
				t.Fatal("the replicas did not all reach the gated writes")
			}
			if tt.gated {
				// Exactly one replica created the CA and the admin CA; the
				// others lost the race and loaded them.
				for msg, want := range map[string]int{
					`"msg":"CA created"`:       1,
					`"msg":"admin CA created"`: 1,
					`"msg":"CA created by another server at the same time: using its authorities"`: tt.n - 1,
				} {
					if got := strings.Count(logs.String(), msg); got != want {
						t.Errorf("%d log records with %s, want %d:\n%s", got, msg, want, logs.String())
					}
				}
			}
			first := cs[0]
			for i, c := range cs[1:] {
				if diff := cmp.Diff(first.Authorities(), c.Authorities()); diff != "" {
					t.Errorf("replica %d: authorities differ from replica 0 (-0 +%d):\n%s", i+1, i+1, diff)
				}
				if !c.Bundle().Equal(first.Bundle()) {
					t.Errorf("replica %d: bundle differs from replica 0", i+1)
				}
				if !c.AdminCACert().Equal(first.AdminCACert()) {
					t.Errorf("replica %d: admin CA differs from replica 0", i+1)
				}
			}
			// The losers removed their authorities' blobs.
			if diff := cmp.Diff(wantBlobNames(authorityIDs(first)...), blobNames(t, st)); diff != "" {
				t.Errorf("blobs (-want +got):\n%s", diff)
			}
			// What one replica signs verifies against another's bundle.
			leaf, _ := signLeaf(t, cs[tt.n-1], time.Hour)
			if _, _, err := x509svid.Verify(leaf, first.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
				t.Errorf("leaf of replica %d does not verify against replica 0's bundle: %v", tt.n-1, err)
			}
		})
	}
}

func TestStoreStorageRestart(t *testing.T) {
	st, clock, cs := replicas(t, 1)
	k := cs[0].storage.(*StoreStorage).kek
	leaf, id := signLeaf(t, cs[0], time.Hour)
	again := mustNew(t, storeConfig(newTestStoreStorage(t, st, k), clock))
	if diff := cmp.Diff(cs[0].Authorities(), again.Authorities()); diff != "" {
		t.Errorf("authorities after restart (-before +after):\n%s", diff)
	}
	if _, _, err := x509svid.Verify(leaf, again.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
		t.Errorf("leaf from before restart does not verify: %v", err)
	}
	if _, got := signLeaf(t, again, time.Hour); got != id {
		t.Errorf("signing authority after restart = %s, want %s", got, id)
	}
	if !again.AdminCACert().Equal(cs[0].AdminCACert()) {
		t.Error("admin CA changed across restart")
	}
}

func TestStoreStorageRotationAcrossReplicas(t *testing.T) {
	st, clock, cs := replicas(t, 2)
	leader, follower := cs[0], cs[1]
	oldID := leader.Authorities()[0].ID
	oldLeaf, _ := signLeaf(t, follower, time.Hour)

	reload := func(t *testing.T, step string, wantChanged bool) {
		t.Helper()
		changed, err := follower.Reload()
		if err != nil {
			t.Fatalf("%s: Reload: %v", step, err)
		}
		if changed != wantChanged {
			t.Errorf("%s: Reload changed = %v, want %v", step, changed, wantChanged)
		}
		if diff := cmp.Diff(leader.Authorities(), follower.Authorities()); diff != "" {
			t.Errorf("%s: follower's authorities (-leader +follower):\n%s", step, diff)
		}
		if !follower.Bundle().Equal(leader.Bundle()) {
			t.Errorf("%s: follower's bundle differs from the leader's", step)
		}
	}
	reload(t, "nothing changed", false)
	// The leader learns of the follower's reservation (the server reloads
	// when the store reports a blob change); that changes neither the
	// bundle nor the active authority.
	leaderReload := func(t *testing.T) {
		t.Helper()
		if changed, err := leader.Reload(); err != nil || changed {
			t.Fatalf("leader Reload = %v, %v; want false, nil", changed, err)
		}
	}
	leaderReload(t)

	clock.Add(10 * time.Second)
	prepared, err := leader.Prepare()
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	reload(t, "after Prepare", true)
	if since, ok := follower.PreparedSince(); !ok || !since.Equal(prepared.CreatedAt) {
		t.Errorf("follower PreparedSince = %s, %v; want %s, true", since, ok, prepared.CreatedAt)
	}
	if _, id := signLeaf(t, follower, time.Hour); id != oldID {
		t.Errorf("after Prepare, follower signed with %s, want the old authority %s", id, oldID)
	}
	reload(t, "after the follower's reservation", false)

	clock.Add(10 * time.Second)
	if _, err := leader.Activate(); err != nil {
		t.Fatalf("Activate: %v", err)
	}
	reload(t, "after Activate", true)
	newLeaf, id := signLeaf(t, follower, time.Hour)
	if id != prepared.ID {
		t.Errorf("after Activate, follower signed with %s, want the new authority %s", id, prepared.ID)
	}
	for name, leaf := range map[string][]*x509.Certificate{"old": oldLeaf, "new": newLeaf} {
		if _, _, err := x509svid.Verify(leaf, leader.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
			t.Errorf("%s leaf signed by the follower does not verify against the leader's bundle: %v", name, err)
		}
	}
	// The follower's reservations before the activation count.
	if got, want := leader.Authorities()[0].RemoveAfter, oldLeaf[0].NotAfter; got.Before(want) {
		t.Errorf("RemoveAfter = %s, before the NotAfter %s of a leaf the follower signed", got, want)
	}

	clock.Set(leader.Authorities()[0].RemoveAfter)
	leaderReload(t)
	if changed, err := leader.Tidy(); !changed || err != nil {
		t.Fatalf("Tidy = %v, %v; want true, nil", changed, err)
	}
	reload(t, "after Tidy", true)
	if diff := cmp.Diff(wantBlobNames(prepared.ID), blobNames(t, st)); diff != "" {
		t.Errorf("blobs after Tidy (-want +got):\n%s", diff)
	}
}

func TestStoreStorageStaleReplicaSignsWithNewAuthority(t *testing.T) {
	// A replica that missed the change notification finds out at its next
	// reservation write, which conflicts: it reloads and signs with the
	// authority the other replica activated.
	_, clock, cs := replicas(t, 2)
	leader, stale := cs[0], cs[1]
	if _, err := leader.Prepare(); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	activated, err := leader.Activate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, id := signLeaf(t, stale, time.Hour)
	if id != activated.ID {
		t.Errorf("stale replica signed with %s, want the activated %s", id, activated.ID)
	}
	if _, _, err := x509svid.Verify(leaf, leader.Bundle(), x509svid.WithTime(clock.Now())); err != nil {
		t.Errorf("leaf does not verify against the leader's bundle: %v", err)
	}
	if diff := cmp.Diff(leader.Authorities(), stale.Authorities()); diff != "" {
		t.Errorf("stale replica's authorities after signing (-leader +stale):\n%s", diff)
	}
}

func TestStoreStorageReservationMerge(t *testing.T) {
	tests := []struct {
		name string
		// first runs on replica 0, then replica 1, which has not reloaded,
		// signs a leaf of secondTTL.
		first     func(t *testing.T, c *CA)
		secondTTL time.Duration
		// wantReserved is the persisted reservation of the first
		// authority, from t0.
		wantReserved time.Duration
		wantPrepared bool
	}{
		{
			name:         "other reservation higher: kept",
			first:        func(t *testing.T, c *CA) { signLeaf(t, c, 3*time.Hour) },
			secondTTL:    time.Hour,
			wantReserved: 3*time.Hour + reservationSlack,
		},
		{
			name:         "other reservation lower: raised",
			first:        func(t *testing.T, c *CA) { signLeaf(t, c, time.Hour) },
			secondTTL:    2 * time.Hour,
			wantReserved: 2*time.Hour + reservationSlack,
		},
		{
			name: "other replica's Prepare: kept",
			first: func(t *testing.T, c *CA) {
				if _, err := c.Prepare(); err != nil {
					t.Fatal(err)
				}
			},
			secondTTL:    time.Hour,
			wantReserved: time.Hour + reservationSlack,
			wantPrepared: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, clock, cs := replicas(t, 2)
			t0 := clock.Now()
			tt.first(t, cs[0])
			chain, _ := signLeaf(t, cs[1], tt.secondTTL)

			md := storedMetadata(t, st)
			if got, want := md.Authorities[0].ReservedNotAfter, t0.Add(tt.wantReserved); !got.Equal(want) {
				t.Errorf("persisted reservation = %s, want t0+%s", got.Sub(t0), tt.wantReserved)
			}
			if got := md.Authorities[0].ReservedNotAfter; got.Before(chain[0].NotAfter) {
				t.Errorf("persisted reservation %s is before the NotAfter %s of the leaf replica 1 signed", got, chain[0].NotAfter)
			}
			if got := len(md.Authorities) == 2 && md.Authorities[1].State == StatePrepared; got != tt.wantPrepared {
				t.Errorf("prepared authority persisted = %v, want %v", got, tt.wantPrepared)
			}
			for i, c := range cs {
				if _, err := c.Reload(); err != nil {
					t.Fatal(err)
				}
				if got := c.active.meta.ReservedNotAfter; !got.Equal(t0.Add(tt.wantReserved)) {
					t.Errorf("replica %d: reservation after Reload = t0+%s, want t0+%s", i, got.Sub(t0), tt.wantReserved)
				}
			}
		})
	}
}

func TestStoreStorageConcurrentReservations(t *testing.T) {
	// Replicas sign at once with growing TTLs: whatever the interleaving,
	// the persisted reservation covers every leaf signed.
	st, _, cs := replicas(t, 3)
	var (
		mu          sync.Mutex
		maxNotAfter time.Time
		wg          sync.WaitGroup
	)
	for _, c := range cs {
		wg.Go(func() {
			for i := range 10 {
				chain, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: time.Hour + time.Duration(i)*15*time.Minute})
				if err != nil {
					t.Errorf("SignX509SVID: %v", err)
					return
				}
				mu.Lock()
				if chain[0].NotAfter.After(maxNotAfter) {
					maxNotAfter = chain[0].NotAfter
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := storedMetadata(t, st).Authorities[0].ReservedNotAfter; got.Before(maxNotAfter) {
		t.Errorf("persisted reservation %s is before the latest NotAfter signed, %s", got, maxNotAfter)
	}
}

func TestStoreStorageRotationConflict(t *testing.T) {
	// Rotation runs on one elected replica, but a short overlap with a
	// successor is possible: the stale one's step fails with
	// ErrConcurrentChange, and it then holds the winner's state.
	tests := []struct {
		name string
		// setup runs on both replicas (they then agree), winner on
		// replica 0, then loser on replica 1, which has not reloaded.
		setup  func(t *testing.T, c *CA, clock *fakeClock)
		winner func(t *testing.T, c *CA) error
		loser  func(c *CA) error
	}{
		{
			name:   "Prepare",
			winner: func(t *testing.T, c *CA) error { _, err := c.Prepare(); return err },
			loser:  func(c *CA) error { _, err := c.Prepare(); return err },
		},
		{
			name: "Activate",
			setup: func(t *testing.T, c *CA, clock *fakeClock) {
				if _, err := c.Prepare(); err != nil {
					t.Fatal(err)
				}
			},
			winner: func(t *testing.T, c *CA) error { _, err := c.Activate(); return err },
			loser:  func(c *CA) error { _, err := c.Activate(); return err },
		},
		{
			name: "Tidy",
			setup: func(t *testing.T, c *CA, clock *fakeClock) {
				if _, err := c.Prepare(); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Activate(); err != nil {
					t.Fatal(err)
				}
				clock.Add(time.Minute)
			},
			winner: func(t *testing.T, c *CA) error { _, err := c.Tidy(); return err },
			loser:  func(c *CA) error { _, err := c.Tidy(); return err },
		},
		{
			name: "Prepare against a reservation",
			winner: func(t *testing.T, c *CA) error {
				_, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: time.Hour})
				return err
			},
			loser: func(c *CA) error { _, err := c.Prepare(); return err },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, clock, cs := replicas(t, 2)
			if tt.setup != nil {
				tt.setup(t, cs[0], clock)
				if _, err := cs[1].Reload(); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.winner(t, cs[0]); err != nil {
				t.Fatalf("winner: %v", err)
			}
			err := tt.loser(cs[1])
			if !errors.Is(err, ErrConcurrentChange) {
				t.Fatalf("loser: got %v, want ErrConcurrentChange", err)
			}
			// The loser reloaded: it holds the winner's state, and left no
			// blobs behind.
			if diff := cmp.Diff(cs[0].Authorities(), cs[1].Authorities()); diff != "" {
				t.Errorf("loser's authorities (-winner +loser):\n%s", diff)
			}
			if diff := cmp.Diff(wantBlobNames(authorityIDs(cs[0])...), blobNames(t, st)); diff != "" {
				t.Errorf("blobs (-want +got):\n%s", diff)
			}
			// Its next tick finds the step done, or does it.
			if err := tt.loser(cs[1]); errors.Is(err, ErrConcurrentChange) {
				t.Errorf("loser's retry: got %v, want no conflict", err)
			}
		})
	}
}

func TestStoreStorageSealsKeys(t *testing.T) {
	st, _, cs := replicas(t, 1)
	c := cs[0]
	c.mu.RLock()
	a := c.active
	c.mu.RUnlock()
	keys := map[string][]byte{} // blob name → PKCS#8 DER
	for name, key := range map[string]interface{ Bytes() ([]byte, error) }{
		keyFileName(a.meta.ID):    a.key,
		jwtKeyFileName(a.meta.ID): a.jwtKey,
		adminKeyFile:              c.admin.key,
	} {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		keys[name] = der
		raw, err := key.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		keys[name+" (raw scalar)"] = raw
	}
	blobs, err := st.ListBlobs(t.Context(), testPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		name := strings.TrimPrefix(b.Name, testPrefix)
		t.Run(name, func(t *testing.T) {
			if bytes.Contains(b.Data, []byte("PRIVATE KEY")) {
				t.Errorf("blob holds a PEM private key")
			}
			for what, der := range keys {
				if bytes.Contains(b.Data, der) {
					t.Errorf("blob holds the key of %s", what)
				}
			}
			isKey := strings.HasSuffix(name, keyFileSuffix)
			if sealed := bytes.HasPrefix(b.Data, []byte("tmk\x01")); sealed != isKey {
				t.Errorf("blob sealed = %v, want %v", sealed, isKey)
			}
			if block, _ := pem.Decode(b.Data); strings.HasSuffix(name, certFileSuffix) && (block == nil || block.Type != "CERTIFICATE") {
				t.Errorf("certificate blob is not a plain PEM certificate")
			}
		})
	}
}

func TestStoreStorageWrongKEK(t *testing.T) {
	st, clock, cs := replicas(t, 1)
	want := cs[0].storage.(*StoreStorage).kek.ID()
	other := newTestKEK(t)
	_, err := New(storeConfig(newTestStoreStorage(t, st, other), clock))
	wantErr := "sealed with KEK key ID " + want + ", but this server's KEK has key ID " + other.ID()
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("New with another KEK: got error %v, want one containing %q", err, wantErr)
	}
}

func TestStoreStorageTampered(t *testing.T) {
	tests := []struct {
		name string
		// tamper returns the blob (after the prefix) to change and its new
		// content, given the blobs of the CA's active authority.
		tamper  func(t *testing.T, st store.Store, id string) (name string, data []byte)
		wantErr string
	}{
		{
			name: "sealed key byte flipped",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				b := getBlob(t, st, keyFileName(id))
				b[len(b)-5] ^= 0x40
				return keyFileName(id), b
			},
			wantErr: "does not authenticate",
		},
		{
			name: "sealed key truncated",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				return keyFileName(id), getBlob(t, st, keyFileName(id))[:20]
			},
			wantErr: "not a sealed value",
		},
		{
			name: "sealed key moved to another name",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				return keyFileName(id), getBlob(t, st, jwtKeyFileName(id))
			},
			wantErr: "does not authenticate",
		},
		{
			name: "sealed admin key moved to an authority",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				return jwtKeyFileName(id), getBlob(t, st, adminKeyFile)
			},
			wantErr: "does not authenticate",
		},
		{
			name: "plain PEM key in place of a sealed one",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				b, err := encodeKeyPEM(mustKey(t))
				if err != nil {
					t.Fatal(err)
				}
				return keyFileName(id), b
			},
			wantErr: "not a sealed value",
		},
		{
			name: "sealed admin key byte flipped",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				b := getBlob(t, st, adminKeyFile)
				b[30] ^= 0x01
				return adminKeyFile, b
			},
			wantErr: "does not authenticate",
		},
		{
			name: "metadata garbage",
			tamper: func(t *testing.T, st store.Store, id string) (string, []byte) {
				return metadataFile, []byte("\x00\xff{")
			},
			wantErr: "parse authorities.json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, clock, cs := replicas(t, 1)
			c := cs[0]
			k := c.storage.(*StoreStorage).kek
			signLeaf(t, c, time.Hour) // reserves an hour and ten minutes
			name, data := tt.tamper(t, st, c.Authorities()[0].ID)
			if _, err := st.PutBlob(t.Context(), testPrefix+name, data, store.AnyRevision); err != nil {
				t.Fatal(err)
			}
			_, err := New(storeConfig(newTestStoreStorage(t, st, k), clock))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: got error %v, want one containing %q", err, tt.wantErr)
			}
			if name == metadataFile {
				// A running replica keeps its state.
				before := c.Authorities()
				if _, err := c.Reload(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("Reload: got error %v, want one containing %q", err, tt.wantErr)
				}
				if diff := cmp.Diff(before, c.Authorities()); diff != "" {
					t.Errorf("authorities after a failed Reload (-before +after):\n%s", diff)
				}
				// It signs within the reservation it holds; it cannot
				// extend it.
				signLeaf(t, c, time.Minute)
				if _, _, err := c.SignX509SVID(X509Params{ID: mustID(t, "/w"), PublicKey: mustKey(t).Public(), TTL: 2 * time.Hour}); err == nil {
					t.Error("signing past the reservation succeeded although the metadata is unreadable")
				}
			}
		})
	}
}

func getBlob(t *testing.T, st store.Store, name string) []byte {
	t.Helper()
	b, err := st.GetBlob(t.Context(), testPrefix+name)
	if err != nil {
		t.Fatal(err)
	}
	return b.Data
}

func TestStoreStorageReloadPicksUpNewAuthorityAfterTidy(t *testing.T) {
	// A replica that slept through a whole rotation (prepare, activate,
	// tidy) loads the new authority and drops the old one in one Reload.
	_, clock, cs := replicas(t, 2)
	leader, sleeper := cs[0], cs[1]
	if _, err := leader.Prepare(); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.Activate(); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if _, err := leader.Tidy(); err != nil {
		t.Fatal(err)
	}
	changed, err := sleeper.Reload()
	if err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want true, nil", changed, err)
	}
	if diff := cmp.Diff(leader.Authorities(), sleeper.Authorities()); diff != "" {
		t.Errorf("authorities (-leader +sleeper):\n%s", diff)
	}
}

func TestNewStoreStorageErrors(t *testing.T) {
	st := openTestStore(t)
	k := newTestKEK(t)
	tests := []struct {
		name    string
		st      store.Store
		prefix  string
		kek     *kek.KEK
		wantErr string
	}{
		{"no store", nil, testPrefix, k, "a store is required"},
		{"no KEK", st, testPrefix, nil, "a KEK is required"},
		{"no prefix", st, "", k, "prefix is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStoreStorage(tt.st, tt.prefix, tt.kek)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewStoreStorage: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewDirAndStorage(t *testing.T) {
	st := openTestStore(t)
	cfg := storeConfig(newTestStoreStorage(t, st, newTestKEK(t)), newClock())
	cfg.Dir = t.TempDir()
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Fatalf("New with Dir and Storage: got error %v, want one containing %q", err, "not both")
	}
}
