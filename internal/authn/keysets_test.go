package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

const issR = "https://remote.example"

// remoteSetup is an Authenticator whose one rule uses a remote JWKS served
// by srv, with the KeySets wanting it (not running: tests drive Refresh).
type remoteSetup struct {
	srv  *jwksServer
	keys *KeySets
	auth *Authenticator
	logs *logBuffer
	tok  string // a valid token of issR
}

func newRemoteSetup(t *testing.T, cfg KeySetsConfig) *remoteSetup {
	t.Helper()
	k := tk(t)
	s := &remoteSetup{logs: &logBuffer{}}
	s.srv = newJWKSServer(t, jwksJSON(t, jwkOf(t, k.rsaA, "r1", nil)))
	if cfg.Logger == nil {
		cfg.Logger = s.logs.logger()
	}
	s.keys = NewKeySets(cfg)
	var err error
	s.auth, err = NewAuthenticator([]Rule{{Issuer: issR, JWKSURI: s.srv.URL + "/jwks"}}, s.keys, clockAt(fixedNow))
	if err != nil {
		t.Fatal(err)
	}
	s.keys.Want(s.auth.JWKSURIs())
	s.tok = mint(t, "RS256", k.rsaA, "r1", claimsFor(issR))
	return s
}

func (s *remoteSetup) authenticate(t *testing.T) Reason {
	t.Helper()
	res, err := s.auth.Authenticate(request(t, "/", bearer(s.tok)...))
	if err == nil && res.Principal != issR+"/user-1" {
		t.Fatalf("got principal %q, want %q", res.Principal, issR+"/user-1")
	}
	return reasonOf(t, err)
}

func TestRemoteJWKS(t *testing.T) {
	big := `{"keys":[],"pad":"` + strings.Repeat("x", 2048) + `"}`
	tests := []struct {
		name string
		// serve sets the server's answer before the first Refresh.
		status int
		body   string
		down   bool // server closed from the start
		cfg    KeySetsConfig
		want   Reason
		// wantErr is in Refresh's error and Status's LastError.
		wantErr string
	}{
		{name: "fetched", status: 200, want: ""},
		{name: "server down from the start", down: true, want: ReasonJWKSUnavailable, wantErr: "connect"},
		{name: "http error", status: 503, body: "unavailable", want: ReasonJWKSUnavailable, wantErr: "http status 503"},
		{name: "garbage", status: 200, body: "<html>not json</html>", want: ReasonJWKSUnavailable, wantErr: "jwks: json"},
		{name: "not a jwks", status: 200, body: `{"kty":"RSA"}`, want: ReasonJWKSUnavailable, wantErr: `no "keys" array`},
		{name: "no usable key", status: 200, body: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, want: ReasonJWKSUnavailable, wantErr: "no usable signing key"},
		{name: "too large", status: 200, body: big, cfg: KeySetsConfig{MaxBytes: 1024}, want: ReasonJWKSUnavailable, wantErr: "exceeds the 1024 byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRemoteSetup(t, tt.cfg)
			if tt.body != "" || tt.status != 200 {
				s.srv.set(tt.status, tt.body)
			}
			if tt.down {
				s.srv.Close()
			}
			if got := s.authenticate(t); got != ReasonJWKSUnavailable {
				t.Fatalf("before any fetch: got reason %q, want %q", got, ReasonJWKSUnavailable)
			}
			err := s.keys.Refresh(context.Background())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Refresh: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got Refresh error %v, want one containing %q", err, tt.wantErr)
			}
			if got := s.authenticate(t); got != tt.want {
				t.Errorf("got reason %q, want %q", got, tt.want)
			}
			st := s.keys.Status()
			if len(st) != 1 {
				t.Fatalf("got %d statuses, want 1", len(st))
			}
			if tt.wantErr == "" {
				if st[0].Keys != 1 || st[0].LastError != "" || st[0].LastSuccess.IsZero() {
					t.Errorf("got status %+v, want 1 key, no error, a success time", st[0])
				}
			} else if !strings.Contains(st[0].LastError, tt.wantErr) || st[0].Keys != 0 {
				t.Errorf("got status %+v, want LastError containing %q and no keys", st[0], tt.wantErr)
			}
			if got, want := s.keys.Ready(s.srv.URL+"/jwks"), tt.wantErr == ""; got != want {
				t.Errorf("got Ready %v, want %v", got, want)
			}
		})
	}
}

// A chunked response has no Content-Length: the limit is on what is read.
func TestRemoteJWKSTooLargeChunked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 64 {
			_, _ = io.WriteString(w, strings.Repeat(" ", 1024))
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	k := NewKeySets(KeySetsConfig{MaxBytes: 4096})
	k.Want([]string{srv.URL})
	err := k.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exceeds the 4096 byte limit") {
		t.Errorf("got %v, want the size limit error", err)
	}
}

func TestRemoteJWKSKeepsLastGoodKeys(t *testing.T) {
	s := newRemoteSetup(t, KeySetsConfig{})
	ctx := context.Background()
	if err := s.keys.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		status  int
		body    string
		close   bool
		wantLog int // "jwks fetch failed" lines so far
	}{
		{name: "500", status: 500, wantLog: 1},
		{name: "500 again is not logged again", status: 500, wantLog: 1},
		{name: "garbage is a new error", status: 200, body: "garbage", wantLog: 2},
		{name: "garbage again", status: 200, body: "garbage", wantLog: 2},
		{name: "server gone", close: true, wantLog: 3},
	}
	for _, st := range steps {
		if st.close {
			s.srv.Close()
		} else {
			s.srv.set(st.status, st.body)
		}
		if err := s.keys.Refresh(ctx); err == nil {
			t.Fatalf("%s: Refresh succeeded, want an error", st.name)
		}
		if got := s.authenticate(t); got != "" {
			t.Errorf("%s: got reason %q, want the last good keys to verify", st.name, got)
		}
		if got := strings.Count(s.logs.String(), "jwks fetch failed"); got != st.wantLog {
			t.Errorf("%s: got %d failure log lines, want %d:\n%s", st.name, got, st.wantLog, s.logs)
		}
	}
	if got := s.keys.Status()[0]; got.Keys != 1 || got.LastError == "" {
		t.Errorf("got status %+v, want the last good key and the last error", got)
	}
	if !strings.Contains(s.logs.String(), "serving_last_good_keys=true") {
		t.Errorf("failure log does not say the last good keys are served:\n%s", s.logs)
	}
}

func TestRemoteJWKSRecoveryIsLogged(t *testing.T) {
	s := newRemoteSetup(t, KeySetsConfig{})
	good := s.srv.body
	s.srv.set(500, "")
	_ = s.keys.Refresh(context.Background())
	s.srv.set(200, good)
	if err := s.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.logs.String(), "jwks fetch recovered") {
		t.Errorf("no recovery log line:\n%s", s.logs)
	}
	if got := s.keys.Status()[0].LastError; got != "" {
		t.Errorf("got LastError %q after a success, want none", got)
	}
}

func TestRemoteJWKSNewKeysReplaceOld(t *testing.T) {
	k := tk(t)
	s := newRemoteSetup(t, KeySetsConfig{})
	if err := s.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.srv.set(200, jwksJSON(t, jwkOf(t, k.rsaB, "r2", nil)))
	if err := s.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.authenticate(t); got != ReasonUnknownKey {
		t.Errorf("token of a rotated-out key: got reason %q, want %q", got, ReasonUnknownKey)
	}
}

func TestWantDropsAndAdds(t *testing.T) {
	s := newRemoteSetup(t, KeySetsConfig{})
	uri := s.srv.URL + "/jwks"
	if err := s.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.keys.Want(nil)
	if s.keys.Ready(uri) || len(s.keys.Status()) != 0 {
		t.Errorf("dropped uri is still there: %+v", s.keys.Status())
	}
	if got := s.authenticate(t); got != ReasonJWKSUnavailable {
		t.Errorf("got reason %q for a dropped uri, want %q", got, ReasonJWKSUnavailable)
	}
	s.keys.Want([]string{uri, uri, ""})
	if got := len(s.keys.Status()); got != 1 {
		t.Errorf("got %d statuses, want 1", got)
	}
	if s.keys.Ready(uri) {
		t.Errorf("re-wanted uri is ready before a fetch")
	}
}

func TestStatusRedactsPassword(t *testing.T) {
	logs := &logBuffer{}
	k := NewKeySets(KeySetsConfig{Logger: logs.logger()})
	k.Want([]string{"http://user:hunter2@127.0.0.1:1/jwks"})
	_ = k.Refresh(context.Background())
	st := k.Status()
	if len(st) != 1 || strings.Contains(st[0].URI, "hunter2") || strings.Contains(st[0].LastError, "hunter2") {
		t.Errorf("status shows the password: %+v", st)
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Errorf("log shows the password:\n%s", logs)
	}
}

func TestRunFetchesWantedAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	s := newRemoteSetup(t, KeySetsConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.keys.Run(ctx) }()
	uri := s.srv.URL + "/jwks"
	waitFor(t, "the first fetch", func() bool { return s.keys.Ready(uri) })
	if got := s.authenticate(t); got != "" {
		t.Errorf("got reason %q after Run fetched, want none", got)
	}

	// A newly wanted URI is fetched at once, not at the next refresh.
	other := newJWKSServer(t, s.srv.body)
	s.keys.Want([]string{uri, other.URL})
	waitFor(t, "the newly wanted uri", func() bool { return s.keys.Ready(other.URL) })

	if err := s.keys.Run(context.Background()); err == nil {
		t.Errorf("a second Run succeeded, want an error")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	s.srv.Close()
	other.Close()
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

// fakeTransport serves JWKS in memory, so the KeySets can run inside a
// synctest bubble where time is virtual.
type fakeTransport struct {
	body     atomic.Pointer[string] // nil: fail
	requests atomic.Int64
}

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.requests.Add(1)
	b := f.body.Load()
	if b == nil {
		return nil, errors.New("connection refused")
	}
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(*b)), Header: http.Header{}, Request: r}, nil
}

// The schedule, in virtual time: at once; while failing after 1, 2, 4, 8,
// 16, 30, 30 s; after a success 20 min later.
func TestRunSchedule(t *testing.T) {
	good := jwksJSON(t, jwkOf(t, tk(t).ed, "e", nil))
	synctest.Test(t, func(t *testing.T) {
		ft := &fakeTransport{}
		k := NewKeySets(KeySetsConfig{Client: &http.Client{Transport: ft}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		k.Want([]string{"https://idp.example/jwks"})
		synctest.Wait()

		want := int64(1)
		check := func(step string) {
			t.Helper()
			if got := ft.requests.Load(); got != want {
				t.Fatalf("%s: got %d requests, want %d", step, got, want)
			}
		}
		check("at once")
		for _, d := range []time.Duration{1, 2, 4, 8, 16, 30, 30} {
			time.Sleep(d*time.Second - time.Millisecond)
			synctest.Wait()
			check(fmt.Sprintf("just before the %v retry", d*time.Second))
			time.Sleep(time.Millisecond)
			synctest.Wait()
			want++
			check(fmt.Sprintf("at the %v retry", d*time.Second))
		}
		ft.body.Store(&good)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		want++
		check("the retry that succeeds")
		if !k.Ready("https://idp.example/jwks") {
			t.Fatal("not ready after a successful fetch")
		}
		time.Sleep(DefaultRefresh - time.Millisecond)
		synctest.Wait()
		check("just before the refresh")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		want++
		check("at the refresh")

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		// synctest.Test fails if any goroutine of the bubble is left.
	})
}

// Cancelling Run while a fetch hangs cancels the fetch and waits for it.
func TestRunCancelsFetchInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		hang := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			close(started)
			<-r.Context().Done()
			return nil, r.Context().Err()
		})
		logs := &logBuffer{}
		k := NewKeySets(KeySetsConfig{Client: &http.Client{Transport: hang}, Logger: logs.logger()})
		k.Want([]string{"https://idp.example/jwks"})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- k.Run(ctx) }()
		<-started
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
		if strings.Contains(logs.String(), "jwks fetch failed") {
			t.Errorf("shutdown was logged as a fetch failure:\n%s", logs)
		}
	})
}

// Dropping a URI cancels its fetch in flight.
func TestWantCancelsDroppedFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		started := make(chan struct{})
		var cancelled atomic.Bool
		hang := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			close(started)
			<-r.Context().Done()
			cancelled.Store(true)
			return nil, r.Context().Err()
		})
		k := NewKeySets(KeySetsConfig{Client: &http.Client{Transport: hang}})
		k.Want([]string{"https://idp.example/jwks"})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = k.Run(ctx) }()
		<-started
		k.Want(nil)
		synctest.Wait()
		if !cancelled.Load() {
			t.Errorf("the dropped uri's fetch was not cancelled")
		}
		if got := len(k.Status()); got != 0 {
			t.Errorf("got %d statuses, want 0", got)
		}
		cancel()
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestDefaultClientRefusesHTTPSDowngrade(t *testing.T) {
	k := tk(t)
	plain := newJWKSServer(t, jwksJSON(t, jwkOf(t, k.ed, "e", nil)))
	tlsSrv := httptest.NewTLSServer(http.RedirectHandler(plain.URL, http.StatusFound))
	t.Cleanup(tlsSrv.Close)
	keys := NewKeySets(KeySetsConfig{})
	keys.cfg.Client.Transport = tlsSrv.Client().Transport // trust the test certificate
	keys.Want([]string{tlsSrv.URL})
	err := keys.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "refusing a redirect from https to http") {
		t.Errorf("got %v, want the downgrade refused", err)
	}
	if got := plain.requests.Load(); got != 0 {
		t.Errorf("the http server got %d requests, want 0", got)
	}
}
