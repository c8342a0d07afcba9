package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// KeySetsConfig configures a KeySets. Zero values take the defaults.
type KeySetsConfig struct {
	// Client fetches the JWKS. Default: a client of its own with a 5 s
	// timeout that refuses a redirect from https to http.
	Client *http.Client
	// Refresh is how long a fetched JWKS is used before it is fetched
	// again. Default 20 min (Istio's).
	Refresh time.Duration
	// RetryInterval is the first delay after a failed fetch; it doubles
	// with each consecutive failure up to MaxRetryInterval. Default 1 s.
	RetryInterval time.Duration
	// MaxRetryInterval caps the retry delay. Default 30 s.
	MaxRetryInterval time.Duration
	// Clock is the time source for schedules and status. Default time.Now.
	// Run waits on real timers for what Clock says is left; under
	// testing/synctest both are virtual, so tests never sleep.
	Clock func() time.Time
	// Logger receives fetch failures (once per change of error) and
	// recoveries. Default: discard.
	Logger *slog.Logger
	// MaxBytes bounds a JWKS response. Default 1 MiB.
	MaxBytes int64
}

// Defaults of KeySetsConfig.
const (
	DefaultFetchTimeout     = 5 * time.Second
	DefaultRefresh          = 20 * time.Minute
	DefaultRetryInterval    = time.Second
	DefaultMaxRetryInterval = 30 * time.Second
	DefaultMaxBytes         = 1 << 20
)

// KeySets fetches and caches remote JWKS, keyed by URI, for every
// Authenticator built over it; it outlives config changes, so a new config
// naming the same URI reuses its keys. The URIs fetched are the ones last
// given to Want. Run does the fetching; the request path only reads.
type KeySets struct {
	cfg       KeySetsConfig
	ownClient bool
	log       *slog.Logger
	wake      chan struct{} // buffered 1: "the schedule changed"

	mu      sync.RWMutex
	entries map[string]*keyEntry
	running bool
}

// keyEntry is the state of one wanted URI. keys is read on the request
// path under KeySets.mu's read lock; the rest is guarded by KeySets.mu.
type keyEntry struct {
	uri  string
	keys *keySet // last good set, nil until the first success

	lastSuccess time.Time
	lastAttempt time.Time
	next        time.Time // when the next fetch is due
	lastErr     error
	loggedErr   string // the error last logged, "" after a success
	failures    int    // consecutive
	fetching    bool
	cancel      context.CancelFunc // of the fetch in flight
}

// KeySetStatus is the state of one URI, for the config dump.
type KeySetStatus struct {
	URI         string    `json:"uri"` // with any password redacted
	Keys        int       `json:"keys"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	NextFetch   time.Time `json:"nextFetch,omitzero"`
	LastError   string    `json:"lastError,omitempty"` // of the last attempt; "" if it succeeded
}

// NewKeySets returns a KeySets wanting no URI.
func NewKeySets(cfg KeySetsConfig) *KeySets {
	k := &KeySets{cfg: cfg, wake: make(chan struct{}, 1), entries: map[string]*keyEntry{}}
	if k.cfg.Client == nil {
		k.cfg.Client = &http.Client{
			Timeout:   DefaultFetchTimeout,
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return errors.New("too many redirects")
				}
				if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
					return errors.New("refusing a redirect from https to http")
				}
				return nil
			},
		}
		k.ownClient = true
	}
	if k.cfg.Refresh <= 0 {
		k.cfg.Refresh = DefaultRefresh
	}
	if k.cfg.RetryInterval <= 0 {
		k.cfg.RetryInterval = DefaultRetryInterval
	}
	if k.cfg.MaxRetryInterval <= 0 {
		k.cfg.MaxRetryInterval = DefaultMaxRetryInterval
	}
	if k.cfg.RetryInterval > k.cfg.MaxRetryInterval {
		k.cfg.RetryInterval = k.cfg.MaxRetryInterval
	}
	if k.cfg.Clock == nil {
		k.cfg.Clock = time.Now
	}
	if k.cfg.MaxBytes <= 0 {
		k.cfg.MaxBytes = DefaultMaxBytes
	}
	logger := k.cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k.log = logger.With(logComponent, componentName)
	return k
}

// Want sets the URIs the current config needs. Newly wanted ones are due
// at once (Run is woken); ones no longer wanted are dropped with their
// keys, and a fetch of theirs in flight is cancelled. Call it with a new
// config's URIs before swapping its Authenticator in; the old one, for
// requests still using it, fails closed on a dropped URI.
func (k *KeySets) Want(uris []string) {
	want := map[string]bool{}
	for _, u := range uris {
		if u != "" {
			want[u] = true
		}
	}
	k.mu.Lock()
	added := false
	for u, e := range k.entries {
		if !want[u] {
			if e.cancel != nil {
				e.cancel()
			}
			delete(k.entries, u)
		}
	}
	for u := range want {
		if _, ok := k.entries[u]; !ok {
			k.entries[u] = &keyEntry{uri: u}
			added = true
		}
	}
	k.mu.Unlock()
	if added {
		k.poke()
	}
}

func (k *KeySets) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// Ready reports whether uri has keys: it is wanted and was fetched
// successfully at least once.
func (k *KeySets) Ready(uri string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e := k.entries[uri]
	return e != nil && e.keys != nil
}

// Status returns the state of every wanted URI, sorted by URI.
func (k *KeySets) Status() []KeySetStatus {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := make([]KeySetStatus, 0, len(k.entries))
	for _, e := range k.entries {
		s := KeySetStatus{URI: redact(e.uri), LastSuccess: e.lastSuccess, LastAttempt: e.lastAttempt, NextFetch: e.next}
		if e.keys != nil {
			s.Keys = len(e.keys.keys)
		}
		if e.lastErr != nil {
			s.LastError = e.lastErr.Error()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b KeySetStatus) int {
		switch {
		case a.URI < b.URI:
			return -1
		case a.URI > b.URI:
			return 1
		}
		return 0
	})
	return out
}

// errNotWanted is the cause of jwks-unavailable when the URI is not wanted.
var errNotWanted = errors.New("jwks uri is not wanted by the key sets (Want was not called with it)")

// lookup returns the last good keys of uri, or why there are none.
func (k *KeySets) lookup(uri string) (*keySet, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e := k.entries[uri]
	switch {
	case e == nil:
		return nil, errNotWanted
	case e.keys != nil:
		return e.keys, nil
	case e.lastErr != nil:
		return nil, fmt.Errorf("jwks not fetched yet: %w", e.lastErr)
	default:
		return nil, errors.New("jwks not fetched yet")
	}
}

// Run fetches the wanted URIs at once, then each again when its refresh
// (or, while failing, its retry) is due, and whenever Want adds one. Each
// fetch runs in a goroutine of Run's; Run cancels and waits for them
// before it returns nil on ctx's cancellation. Only one Run at a time.
func (k *KeySets) Run(ctx context.Context) error {
	k.mu.Lock()
	if k.running {
		k.mu.Unlock()
		return errors.New("authn: key sets are already running")
	}
	k.running = true
	k.mu.Unlock()

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
		if k.ownClient {
			k.cfg.Client.CloseIdleConnections()
		}
		k.mu.Lock()
		k.running = false
		k.mu.Unlock()
	}()
	for {
		var timeout <-chan time.Time
		var timer *time.Timer
		if wait, ok := k.startDue(ctx, &wg); ok {
			timer = time.NewTimer(wait)
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
		case <-k.wake:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// startDue starts a fetch for every entry that is due and not fetching,
// and returns how long until the next one not fetching is due (ok is
// false when there is none).
func (k *KeySets) startDue(ctx context.Context, wg *sync.WaitGroup) (wait time.Duration, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.cfg.Clock()
	for _, e := range k.entries {
		if e.fetching {
			continue
		}
		if d := e.next.Sub(now); d > 0 {
			if !ok || d < wait {
				wait, ok = d, true
			}
			continue
		}
		fctx, cancel := context.WithCancel(ctx)
		e.fetching, e.cancel = true, cancel
		wg.Go(func() {
			defer cancel()
			_ = k.fetchEntry(fctx, e, true)
			k.poke()
		})
	}
	return wait, ok
}

// Refresh fetches every wanted URI now, waits for the fetches, and returns
// their errors joined. It works with or without Run (tests, an admin
// "refresh now"); a fetch Run has in flight for the same URI is not
// waited for.
func (k *KeySets) Refresh(ctx context.Context) error {
	k.mu.RLock()
	entries := make([]*keyEntry, 0, len(k.entries))
	for _, e := range k.entries {
		entries = append(entries, e)
	}
	k.mu.RUnlock()
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { errs[i] = k.fetchEntry(ctx, e, false) })
	}
	wg.Wait()
	k.poke()
	return errors.Join(errs...)
}

// fetchEntry fetches e's URI and records the outcome, unless e was dropped
// meanwhile. A failure keeps the last good keys. scheduled is true for
// Run's fetches, which own e.fetching.
func (k *KeySets) fetchEntry(ctx context.Context, e *keyEntry, scheduled bool) error {
	set, err := k.fetch(ctx, e.uri)
	now := k.cfg.Clock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if scheduled {
		e.fetching, e.cancel = false, nil
	}
	uri := redact(e.uri)
	if ctx.Err() != nil {
		// Shutting down, or dropped by Want: not the source's failure.
		return fmt.Errorf("jwks %s: %w", uri, context.Cause(ctx))
	}
	if k.entries[e.uri] != e {
		if err != nil {
			return fmt.Errorf("jwks %s: %w", uri, err)
		}
		return nil // dropped by Want while fetching
	}
	e.lastAttempt = now
	log := k.log.With(logURI, uri)
	if err != nil {
		if msg := err.Error(); msg != e.loggedErr {
			e.loggedErr = msg
			log.Warn("jwks fetch failed", logError, msg, logServing, e.keys != nil)
		}
		err = fmt.Errorf("jwks %s: %w", uri, err)
		e.lastErr = err
		e.failures++
		e.next = now.Add(k.backoff(e.failures))
		return err
	}
	first := e.keys == nil
	recovered := e.loggedErr != ""
	e.keys, e.lastErr, e.loggedErr, e.failures = set, nil, "", 0
	e.lastSuccess = now
	e.next = now.Add(k.cfg.Refresh)
	switch {
	case recovered:
		log.Info("jwks fetch recovered", logKeys, len(set.keys), logSkipped, len(set.skipped))
	case first:
		log.Info("jwks fetched", logKeys, len(set.keys), logSkipped, len(set.skipped))
	default:
		log.Debug("jwks refreshed", logKeys, len(set.keys), logSkipped, len(set.skipped))
	}
	for _, s := range set.skipped {
		log.Debug("jwks entry skipped", logReason, s)
	}
	return nil
}

// backoff is the delay after the n-th consecutive failure (n >= 1).
func (k *KeySets) backoff(n int) time.Duration {
	d := k.cfg.RetryInterval
	for i := 1; i < n && d < k.cfg.MaxRetryInterval; i++ {
		d *= 2
	}
	return min(d, k.cfg.MaxRetryInterval)
}

// fetch GETs uri and parses the JWKS. Errors never contain the URI (the
// caller adds it, redacted).
func (k *KeySets) fetch(ctx context.Context, uri string) (*keySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, errors.New("invalid request url")
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, unredacted query included.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("http status %d", resp.StatusCode)
	}
	if resp.ContentLength > k.cfg.MaxBytes {
		return nil, fmt.Errorf("response of %d bytes exceeds the %d byte limit", resp.ContentLength, k.cfg.MaxBytes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, k.cfg.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(body)) > k.cfg.MaxBytes {
		return nil, fmt.Errorf("response exceeds the %d byte limit", k.cfg.MaxBytes)
	}
	return parseJWKS(body, false)
}

// redact hides a password in uri.
func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}
