package sqlite

import (
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func openWriter(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "m.db"), false))
	if err != nil {
		t.Fatalf("sql.Open: %v", err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func versions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT version FROM schema_version ORDER BY version`)
	if err != nil {
		t.Fatalf("query schema_version: %v", err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatalf("scan: %v", err)
		}
		vs = append(vs, v)
	}
	return vs
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(),
		`SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, name).Scan(&n); err != nil {
		t.Fatalf("query sqlite_schema: %v", err)
	}
	return n == 1
}

var (
	createA = migration{version: 1, name: "a", stmts: []string{`CREATE TABLE a (x INTEGER)`}}
	createB = migration{version: 2, name: "b", stmts: []string{`CREATE TABLE b (x INTEGER)`}}
	broken  = migration{version: 2, name: "broken", stmts: []string{`CREATE TABLE b (x INTEGER)`, `NOT SQL`}}
)

func TestMigrate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name         string
		runs         [][]migration
		wantErr      string // substring of the last run's error; "" for none
		wantVersions []int
		wantTables   []string
		noTables     []string
	}{
		{
			name:         "fresh database",
			runs:         [][]migration{{createA}},
			wantVersions: []int{1},
			wantTables:   []string{"a"},
		},
		{
			name:         "rerun changes nothing",
			runs:         [][]migration{{createA}, {createA}, {createA}},
			wantVersions: []int{1},
			wantTables:   []string{"a"},
		},
		{
			name:         "later release adds a migration",
			runs:         [][]migration{{createA}, {createA, createB}},
			wantVersions: []int{1, 2},
			wantTables:   []string{"a", "b"},
		},
		{
			name:         "failed migration rolls back whole",
			runs:         [][]migration{{createA}, {createA, broken}},
			wantErr:      "migration 2 (broken)",
			wantVersions: []int{1},
			wantTables:   []string{"a"},
			noTables:     []string{"b"},
		},
		{
			name:         "failure on a fresh database leaves nothing",
			runs:         [][]migration{{createA, broken}},
			wantErr:      "migration 2 (broken)",
			wantVersions: nil,
			noTables:     []string{"a", "b"},
		},
		{
			name:         "database newer than the binary",
			runs:         [][]migration{{createA, createB}, {createA}},
			wantErr:      "schema version 2 is newer than this binary supports (1)",
			wantVersions: []int{1, 2},
		},
		{
			name:     "versions must count from one",
			runs:     [][]migration{{createB}},
			wantErr:  `migration "b" has version 2, want 1`,
			noTables: []string{"b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openWriter(t)
			var err error
			for i, ms := range tc.runs {
				err = migrate(t.Context(), db, ms, now)
				if err != nil && i < len(tc.runs)-1 {
					t.Fatalf("run %d: %v", i+1, err)
				}
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("migrate: got error %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("migrate: got error %v, want one containing %q", err, tc.wantErr)
			}
			if tableExists(t, db, "schema_version") {
				if got := versions(t, db); !slices.Equal(got, tc.wantVersions) {
					t.Errorf("versions: got %v, want %v", got, tc.wantVersions)
				}
			} else if len(tc.wantVersions) > 0 {
				t.Errorf("schema_version missing, want versions %v", tc.wantVersions)
			}
			for _, name := range tc.wantTables {
				if !tableExists(t, db, name) {
					t.Errorf("table %s missing", name)
				}
			}
			for _, name := range tc.noTables {
				if tableExists(t, db, name) {
					t.Errorf("table %s exists, want none", name)
				}
			}
		})
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migrations[%d] %q: got version %d, want %d", i, m.name, m.version, i+1)
		}
	}
}

func TestConnectionPragmas(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })

	for _, tc := range []struct {
		name   string
		db     *sql.DB
		pragma string
		want   string
	}{
		{"writer journal mode", s.wdb, "journal_mode", "wal"},
		{"writer synchronous", s.wdb, "synchronous", "1"}, // NORMAL
		{"writer foreign keys", s.wdb, "foreign_keys", "1"},
		{"writer busy timeout", s.wdb, "busy_timeout", "5000"},
		{"writer writable", s.wdb, "query_only", "0"},
		{"reader journal mode", s.rdb, "journal_mode", "wal"},
		{"reader busy timeout", s.rdb, "busy_timeout", "5000"},
		{"reader query only", s.rdb, "query_only", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if err := tc.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
			}
			if got != tc.want {
				t.Errorf("PRAGMA %s: got %q, want %q", tc.pragma, got, tc.want)
			}
		})
	}
}
