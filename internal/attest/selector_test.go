package attest

import (
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	sha := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name string
		in   string
		want Selector
	}{
		{"uid", "unix:uid:1000", Selector{Type: "unix", Value: "uid:1000"}},
		{"uid-zero", "unix:uid:0", Selector{Type: "unix", Value: "uid:0"}},
		{"uid-max", "unix:uid:4294967295", Selector{Type: "unix", Value: "uid:4294967295"}},
		{"gid", "unix:gid:100", Selector{Type: "unix", Value: "gid:100"}},
		{"user", "unix:user:www-data", Selector{Type: "unix", Value: "user:www-data"}},
		{"path", "unix:path:/usr/bin/web", Selector{Type: "unix", Value: "path:/usr/bin/web"}},
		{"path-root", "unix:path:/", Selector{Type: "unix", Value: "path:/"}},
		{"path-with-colon", "unix:path:/opt/a:b", Selector{Type: "unix", Value: "path:/opt/a:b"}},
		{"sha256", "unix:sha256:" + sha, Selector{Type: "unix", Value: "sha256:" + sha}},
		{"k8s-ns", "k8s:ns:default", Selector{Type: "k8s", Value: "ns:default"}},
		{"k8s-sa", "k8s:sa:orders.v2", Selector{Type: "k8s", Value: "sa:orders.v2"}},
		{"k8s-pod-name", "k8s:pod-name:web-7d4b9c", Selector{Type: "k8s", Value: "pod-name:web-7d4b9c"}},
		{"k8s-pod-uid", "k8s:pod-uid:0e6c1a4e-5a1f-4d3b-9f5e-1a2b3c4d5e6f", Selector{Type: "k8s", Value: "pod-uid:0e6c1a4e-5a1f-4d3b-9f5e-1a2b3c4d5e6f"}},
		{"k8s-pod-label", "k8s:pod-label:app:orders", Selector{Type: "k8s", Value: "pod-label:app:orders"}},
		{"k8s-pod-label-prefixed", "k8s:pod-label:app.kubernetes.io/name:orders", Selector{Type: "k8s", Value: "pod-label:app.kubernetes.io/name:orders"}},
		{"k8s-pod-label-empty-value", "k8s:pod-label:canary:", Selector{Type: "k8s", Value: "pod-label:canary:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSelector(tc.in)
			if err != nil {
				t.Fatalf("ParseSelector(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseSelector(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("ParseSelector(%q).String() = %q, want the input", tc.in, got.String())
			}
		})
	}
}

func TestParseSelectorErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", `selector "": want TYPE:KEY:VALUE such as unix:uid:1000`},
		{"no-colon", "unix", `selector "unix": want TYPE:KEY:VALUE`},
		{"empty-type", ":uid:1000", `selector ":uid:1000": want TYPE:KEY:VALUE`},
		{"empty-value", "unix:", `selector "unix:": want TYPE:KEY:VALUE`},
		{"unknown-type", "k9s:sa:web", `selector "k9s:sa:web": unknown type "k9s" (supported: unix, k8s)`},
		{"k8s-no-key", "k8s:ns", `want k8s:KEY:VALUE with KEY one of ns, sa, pod-name, pod-uid, pod-label`},
		{"k8s-empty-value", "k8s:sa:", `want k8s:KEY:VALUE`},
		{"k8s-unknown-key", "k8s:node:n1", `unknown k8s key "node" (supported: ns, sa, pod-name, pod-uid, pod-label)`},
		{"k8s-ns-uppercase", "k8s:ns:Default", `ns "Default": a lowercase RFC 1123 label`},
		{"k8s-ns-dot", "k8s:ns:a.b", `ns "a.b"`},
		{"k8s-sa-slash", "k8s:sa:a/b", `sa "a/b": a lowercase RFC 1123 subdomain`},
		{"k8s-pod-uid-colon", "k8s:pod-uid:a:b", `pod-uid "a:b": must be a UID`},
		{"k8s-pod-label-no-value", "k8s:pod-label:app", `want k8s:pod-label:KEY:VALUE`},
		{"k8s-pod-label-bad-key", "k8s:pod-label:-app:x", `pod-label "-app:x"`},
		{"k8s-pod-label-bad-value", "k8s:pod-label:app:a b", `pod-label "app:a b"`},
		{"type-uppercase", "UNIX:uid:1", `unknown type "UNIX"`},
		{"unix-no-key", "unix:uid", `selector "unix:uid": want unix:KEY:VALUE with KEY one of uid, gid, user, path, sha256`},
		{"unix-empty-value", "unix:uid:", `want unix:KEY:VALUE`},
		{"unix-unknown-key", "unix:pid:1", `unknown unix key "pid" (supported: uid, gid, user, path, sha256)`},
		{"uid-not-number", "unix:uid:root", `uid must be a decimal number, got "root"`},
		{"uid-negative", "unix:uid:-1", `uid must be a decimal number, got "-1"`},
		{"uid-too-large", "unix:uid:4294967296", `uid must be a decimal number, got "4294967296"`},
		{"gid-hex", "unix:gid:0x10", `gid must be a decimal number, got "0x10"`},
		{"user-slash", "unix:user:a/b", `user name "a/b" contains a forbidden character`},
		{"user-space", "unix:user:a b", `user name "a b" contains a forbidden character`},
		{"user-colon", "unix:user:a:b", `user name "a:b" contains a forbidden character`},
		{"path-relative", "unix:path:bin/web", `path must be absolute and clean, got "bin/web"`},
		{"path-unclean", "unix:path:/usr/bin/../bin/web", `path must be absolute and clean, got "/usr/bin/../bin/web"`},
		{"path-trailing-slash", "unix:path:/usr/bin/", `path must be absolute and clean`},
		{"sha256-short", "unix:sha256:abc", `sha256 must be 64 lowercase hex characters, got "abc"`},
		{"sha256-uppercase", "unix:sha256:" + strings.Repeat("A", 64), `sha256 must be 64 lowercase hex characters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSelector(tc.in)
			if err == nil {
				t.Fatalf("ParseSelector(%q) = %+v, want an error", tc.in, got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseSelector(%q): got error %q, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestParseSelectors(t *testing.T) {
	got, err := ParseSelectors([]string{"unix:uid:1", "unix:gid:2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Selector{{"unix", "uid:1"}, {"unix", "gid:2"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("ParseSelectors = %v, want %v", got, want)
	}

	_, err = ParseSelectors([]string{"unix:uid:1", "unix:uid:x"})
	if wantErr := `[1]: selector "unix:uid:x"`; err == nil || !strings.HasPrefix(err.Error(), wantErr) {
		t.Errorf("ParseSelectors: got error %v, want one starting with %q", err, wantErr)
	}

	got, err = ParseSelectors(nil)
	if err != nil || len(got) != 0 {
		t.Errorf("ParseSelectors(nil) = %v, %v; want empty, nil", got, err)
	}
}

func TestMatchAll(t *testing.T) {
	uid := Selector{"unix", "uid:1000"}
	gid := Selector{"unix", "gid:1000"}
	path := Selector{"unix", "path:/usr/bin/web"}
	for _, tc := range []struct {
		name       string
		want, have []Selector
		match      bool
	}{
		{"empty-want-matches-nothing", nil, []Selector{uid}, false},
		{"empty-want-empty-have", nil, nil, false},
		{"exact", []Selector{uid}, []Selector{uid}, true},
		{"subset", []Selector{uid, path}, []Selector{gid, path, uid}, true},
		{"missing-one", []Selector{uid, path}, []Selector{uid, gid}, false},
		{"empty-have", []Selector{uid}, nil, false},
		{"repeated-want", []Selector{uid, uid}, []Selector{uid}, true},
		{"type-matters", []Selector{{"k8s", "uid:1000"}}, []Selector{uid}, false},
		{"value-is-exact", []Selector{{"unix", "uid:100"}}, []Selector{uid}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchAll(tc.want, tc.have); got != tc.match {
				t.Errorf("MatchAll(%v, %v) = %t, want %t", tc.want, tc.have, got, tc.match)
			}
		})
	}
}

// FuzzParseSelector checks that ParseSelector never panics and that a
// parsed selector prints as a string that parses back to it.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{
		"unix:uid:1000", "unix:gid:0", "unix:user:root", "unix:path:/usr/bin/web",
		"unix:sha256:" + strings.Repeat("ab", 32), "unix:path:/a:b", "k8s:sa:web", "unix::", ":", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			return
		}
		again, err := ParseSelector(sel.String())
		if err != nil {
			t.Fatalf("ParseSelector(%q) = %+v, whose String() %q does not parse: %v", s, sel, sel.String(), err)
		}
		if again != sel {
			t.Fatalf("ParseSelector(%q) = %+v, but its String() parses to %+v", s, sel, again)
		}
		if !MatchAll([]Selector{sel}, []Selector{again}) {
			t.Fatalf("MatchAll does not match %+v with itself", sel)
		}
	})
}
