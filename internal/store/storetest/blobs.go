package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trustmesh/trustmesh/internal/store"
)

// binaryData holds every byte value, invalid UTF-8 and NULs included, so a
// store that keeps Data as text rather than bytes fails.
var binaryData = func() []byte {
	b := make([]byte, 0, 512)
	for i := range 256 {
		b = append(b, byte(i))
	}
	for i := range 256 {
		b = append(b, byte(255-i))
	}
	return b
}()

func putBlob(t *testing.T, s store.Store, name string, data []byte, expect int64) int64 {
	t.Helper()
	v, err := s.PutBlob(t.Context(), name, data, expect)
	if err != nil {
		t.Fatalf("PutBlob(%q, %d): %v", name, expect, err)
	}
	return v
}

func getBlob(t *testing.T, s store.Store, name string) store.Blob {
	t.Helper()
	b, err := s.GetBlob(t.Context(), name)
	if err != nil {
		t.Fatalf("GetBlob(%q): %v", name, err)
	}
	return b
}

func testBlobVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	const name = "ca/authorities"
	if _, err := s.GetBlob(ctx, name); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBlob of an unknown blob: got %v, want ErrNotFound", err)
	}

	before := time.Now()
	v := putBlob(t, s, name, []byte("one"), store.MustNotExist)
	after := time.Now()
	if v != 1 {
		t.Errorf("first version: got %d, want 1", v)
	}
	b := getBlob(t, s, name)
	if b.Name != name || string(b.Data) != "one" || b.Version != 1 {
		t.Errorf("GetBlob: got %q %q version %d, want %q %q version 1", b.Name, b.Data, b.Version, name, "one")
	}
	checkUTC(t, "Updated", b.Updated)
	if b.Updated.Before(before.Truncate(time.Microsecond)) || b.Updated.After(after) {
		t.Errorf("Updated: got %v, want between %v and %v (the store's clock)", b.Updated, before, after)
	}

	for _, tc := range []struct {
		name        string
		expect      int64
		wantErr     error // nil for success
		wantVersion int64 // the version after the call
	}{
		{"must not exist on an existing blob", store.MustNotExist, store.ErrConflict, 1},
		{"future version", 7, store.ErrConflict, 1},
		{"current version", 1, nil, 2},
		{"stale version", 1, store.ErrConflict, 2},
		{"any version", store.AnyRevision, nil, 3},
		{"current version again", 3, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := s.PutBlob(ctx, name, []byte(tc.name), tc.expect)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("PutBlob(%d): got %v, want %v", tc.expect, err, tc.wantErr)
				}
			} else if err != nil {
				t.Errorf("PutBlob(%d): %v", tc.expect, err)
			} else if v != tc.wantVersion {
				t.Errorf("PutBlob(%d): got version %d, want %d", tc.expect, v, tc.wantVersion)
			}
			if got := getBlob(t, s, name).Version; got != tc.wantVersion {
				t.Errorf("version after the call: got %d, want %d", got, tc.wantVersion)
			}
		})
	}

	// A version on a blob that does not exist is a conflict, not a create.
	if _, err := s.PutBlob(ctx, "absent", []byte("x"), 1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutBlob(absent, 1): got %v, want ErrConflict", err)
	}
	if _, err := s.GetBlob(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBlob after a failed create: got %v, want ErrNotFound", err)
	}
	// AnyRevision creates too, from version 1.
	if v := putBlob(t, s, "created-by-any", []byte("x"), store.AnyRevision); v != 1 {
		t.Errorf("PutBlob(new, AnyRevision): got version %d, want 1", v)
	}
	if _, err := s.PutBlob(ctx, name, []byte("x"), -2); err == nil {
		t.Errorf("PutBlob with expected version -2: got nil error, want one")
	}
}

func testBlobData(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"binary", binaryData},
		{"empty", []byte{}},
		{"nil", nil},
		{"json", []byte(`{"keys":["a","b"]}`)},
		{"trailing spaces", []byte("x \t\n ")},
		{"large", bytes.Repeat(binaryData, 2048)}, // 1 MiB
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.data)
			putBlob(t, s, "data/"+tc.name, in, store.MustNotExist)
			if len(in) > 0 {
				in[0]++ // the store must have copied it
			}
			got := getBlob(t, s, "data/"+tc.name)
			if !bytes.Equal(got.Data, tc.data) {
				t.Errorf("Data: got %d bytes %q, want %d bytes %q", len(got.Data), trim(got.Data), len(tc.data), trim(tc.data))
			}
			list, err := s.ListBlobs(ctx, "data/"+tc.name)
			if err != nil {
				t.Fatalf("ListBlobs: %v", err)
			}
			if len(list) != 1 || !bytes.Equal(list[0].Data, tc.data) {
				t.Errorf("ListBlobs: got %d blobs, want 1 with the same Data", len(list))
			}
		})
	}
}

func trim(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func testBlobList(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Inserted out of order. Byte order puts "B" before "a" and "~" after
	// "z"; a locale collation would not.
	names := []string{
		"ca/b", "ca/a", "ca/", "ca", "ca%", "ca_x", "caZ", "Ca/z", "ca/é", "ca/~", "ca/B", "cb", "b",
		"ca/a/nested",
	}
	for i, n := range names {
		putBlob(t, s, n, []byte{byte(i)}, store.MustNotExist)
	}
	putBlob(t, s, "ca/a", []byte("second"), store.AnyRevision)

	sorted := slices.Clone(names)
	slices.Sort(sorted) // Go compares strings bytewise
	withPrefix := func(prefix string) []string {
		var out []string
		for _, n := range sorted {
			if len(n) >= len(prefix) && n[:len(prefix)] == prefix {
				out = append(out, n)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, prefix string
		want         []string
	}{
		{"everything", "", sorted},
		{"directory", "ca/", withPrefix("ca/")},
		{"bare prefix", "ca", withPrefix("ca")},
		{"percent is literal", "ca%", []string{"ca%"}},
		{"underscore is literal", "ca_", []string{"ca_x"}},
		{"case sensitive", "Ca", []string{"Ca/z"}},
		{"multibyte", "ca/\xc3", []string{"ca/é"}},
		{"exact name", "ca/a/nested", []string{"ca/a/nested"}},
		{"none", "zz", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListBlobs(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("ListBlobs(%q): %v", tc.prefix, err)
			}
			var gotNames []string
			for _, b := range got {
				gotNames = append(gotNames, b.Name)
				checkUTC(t, "Updated", b.Updated)
				if want := getBlob(t, s, b.Name); !cmp.Equal(want, b, cmpopts.EquateEmpty()) {
					t.Errorf("listed %q: got %+v, want %+v as GetBlob returns it", b.Name, b, want)
				}
			}
			if diff := cmp.Diff(tc.want, gotNames, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListBlobs(%q) names (-want +got):\n%s", tc.prefix, diff)
			}
		})
	}
}

func testBlobDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	if err := s.DeleteBlob(ctx, "k", store.AnyRevision); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteBlob of an unknown blob: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteBlob(ctx, "k", 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteBlob(1) of an unknown blob: got %v, want ErrNotFound", err)
	}
	putBlob(t, s, "k", []byte("1"), store.MustNotExist)
	putBlob(t, s, "k", []byte("2"), 1)
	for _, expect := range []int64{1, 3, store.MustNotExist} {
		if err := s.DeleteBlob(ctx, "k", expect); !errors.Is(err, store.ErrConflict) {
			t.Errorf("DeleteBlob(%d) at version 2: got %v, want ErrConflict", expect, err)
		}
	}
	if got := getBlob(t, s, "k"); got.Version != 2 || string(got.Data) != "2" {
		t.Errorf("after failed deletes: got version %d data %q, want 2 %q", got.Version, got.Data, "2")
	}
	if err := s.DeleteBlob(ctx, "k", 2); err != nil {
		t.Fatalf("DeleteBlob(2): %v", err)
	}
	if _, err := s.GetBlob(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetBlob after delete: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteBlob(ctx, "k", store.AnyRevision); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteBlob: got %v, want ErrNotFound", err)
	}
	// A blob created again starts over from version 1.
	if v := putBlob(t, s, "k", []byte("again"), store.MustNotExist); v != 1 {
		t.Errorf("re-created version: got %d, want 1", v)
	}
	if err := s.DeleteBlob(ctx, "k", store.AnyRevision); err != nil {
		t.Errorf("DeleteBlob(AnyRevision): %v", err)
	}
	if got, err := s.ListBlobs(ctx, ""); err != nil || len(got) != 0 {
		t.Errorf("ListBlobs after deleting everything: got %d blobs and error %v, want none", len(got), err)
	}
}

func testPresence(t *testing.T, s store.Store) {
	ctx := t.Context()
	if got, err := s.ListPresence(ctx, base); err != nil || len(got) != 0 {
		t.Errorf("ListPresence with none: got %v, %v, want none", got, err)
	}
	pres := func(replica string, data []byte, ttl time.Duration) store.Presence {
		return store.Presence{Replica: replica, Data: data, ExpiresAt: base.Add(ttl)}
	}
	// Inserted out of order; byte order puts "Z" before "a".
	for _, p := range []store.Presence{
		pres("replica-b", []byte("b1"), 2*time.Minute),
		pres("replica-a", binaryData, time.Minute),
		pres("Zed", []byte{}, 30*time.Second),
		pres("replica-c", []byte("c1"), -time.Nanosecond), // already expired
	} {
		if err := s.PutPresence(ctx, p); err != nil {
			t.Fatalf("PutPresence(%s): %v", p.Replica, err)
		}
	}
	utc := func(ps ...store.Presence) []store.Presence {
		for i := range ps {
			ps[i].ExpiresAt = ps[i].ExpiresAt.UTC()
		}
		return ps
	}
	list := func(now time.Time) []store.Presence {
		t.Helper()
		got, err := s.ListPresence(ctx, now)
		if err != nil {
			t.Fatalf("ListPresence(%v): %v", now, err)
		}
		for _, p := range got {
			checkUTC(t, "ExpiresAt", p.ExpiresAt)
		}
		return got
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		want []store.Presence
	}{
		{"at base", base, utc(pres("Zed", nil, 30*time.Second), pres("replica-a", binaryData, time.Minute), pres("replica-b", []byte("b1"), 2*time.Minute))},
		{"a nanosecond before the first expiry", base.Add(30*time.Second - 1), utc(pres("Zed", nil, 30*time.Second), pres("replica-a", binaryData, time.Minute), pres("replica-b", []byte("b1"), 2*time.Minute))},
		{"expired from ExpiresAt on", base.Add(30 * time.Second), utc(pres("replica-a", binaryData, time.Minute), pres("replica-b", []byte("b1"), 2*time.Minute))},
		{"in another zone", base.Add(90 * time.Second).In(time.UTC), utc(pres("replica-b", []byte("b1"), 2*time.Minute))},
		{"all expired", base.Add(time.Hour), nil},
		{"long ago", base.Add(-time.Hour), utc(pres("Zed", nil, 30*time.Second), pres("replica-a", binaryData, time.Minute), pres("replica-b", []byte("b1"), 2*time.Minute), pres("replica-c", []byte("c1"), -time.Nanosecond))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, list(tc.now), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ListPresence (-want +got):\n%s", diff)
			}
		})
	}

	// A put replaces the replica's presence, data and expiry both: a
	// renewal brings back one that had expired.
	if err := s.PutPresence(ctx, pres("replica-c", []byte("c2"), time.Hour)); err != nil {
		t.Fatalf("PutPresence(replica-c) again: %v", err)
	}
	if err := s.PutPresence(ctx, pres("replica-a", []byte("a2"), 10*time.Second)); err != nil {
		t.Fatalf("PutPresence(replica-a) again: %v", err)
	}
	want := utc(pres("replica-b", []byte("b1"), 2*time.Minute), pres("replica-c", []byte("c2"), time.Hour))
	if diff := cmp.Diff(want, list(base.Add(time.Minute))); diff != "" {
		t.Errorf("ListPresence after replacing (-want +got):\n%s", diff)
	}

	for _, r := range []string{"replica-b", "replica-b", "never-there"} {
		if err := s.DeletePresence(ctx, r); err != nil {
			t.Errorf("DeletePresence(%s): %v", r, err)
		}
	}
	want = utc(pres("replica-c", []byte("c2"), time.Hour))
	if diff := cmp.Diff(want, list(base.Add(time.Minute))); diff != "" {
		t.Errorf("ListPresence after deleting (-want +got):\n%s", diff)
	}

	// Pruning removes what expired before the cut-off, nothing else.
	if err := s.PutPresence(ctx, pres("gone", []byte("g"), time.Minute)); err != nil {
		t.Fatalf("PutPresence(gone): %v", err)
	}
	// Zed and replica-a expired before base+1m; gone expires at it.
	if n, err := s.PrunePresence(ctx, base.Add(time.Minute)); err != nil || n != 2 {
		t.Errorf("PrunePresence at gone's expiry: got %d, %v, want 2 (expired before the cut-off, not at it)", n, err)
	}
	if n, err := s.PrunePresence(ctx, base.Add(time.Minute+1)); err != nil || n != 1 {
		t.Errorf("PrunePresence after the expiry: got %d, %v, want 1", n, err)
	}
	if diff := cmp.Diff(want, list(base.Add(-time.Hour))); diff != "" {
		t.Errorf("ListPresence after pruning, even long ago (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name string
		p    store.Presence
	}{
		{"no replica", store.Presence{ExpiresAt: base}},
		{"no expiry", store.Presence{Replica: "r"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.PutPresence(ctx, tc.p); err == nil {
				t.Errorf("PutPresence: got nil error, want one")
			}
		})
	}
}
