package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// FetchJWTSVID returns JWT-SVIDs for audience: for every identity of the
// caller, or only for spiffe_id if set, which must be one of the caller's.
// Tokens are cached per (SPIFFE ID, audience set) until half their lifetime.
func (w *WorkloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	c, err := w.newCaller(ctx, "FetchJWTSVID")
	if err != nil {
		return nil, err
	}
	audience, err := normalizeAudience(req.GetAudience())
	if err != nil {
		return nil, err
	}
	var want spiffeid.ID
	if req.GetSpiffeId() != "" {
		if want, err = spiffeid.FromString(req.GetSpiffeId()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
	}
	p := w.state.load()
	if p.state == nil {
		return nil, errNotReady
	}
	ids, sels, err := w.identitiesOf(c, p)
	if err != nil {
		return nil, err
	}

	resp := &workload.JWTSVIDResponse{}
	done := make(map[spiffeid.ID]bool)
	for _, id := range ids {
		if (!want.IsZero() && id.SPIFFEID != want) || done[id.SPIFFEID] {
			continue
		}
		done[id.SPIFFEID] = true
		token, err := w.jwtSVID(ctx, p, id, audience)
		if err != nil {
			w.log.LogAttrs(ctx, slog.LevelError, "could not mint JWT-SVID",
				slog.String(logKeyRPC, c.rpc),
				slog.Int(logKeyPID, int(c.peer.PID)),
				slog.String(logKeySPIFFEID, id.SPIFFEID.String()),
				slog.String(logKeyError, err.Error()))
			return nil, status.Error(codes.Unavailable, "could not mint JWT-SVID; retry")
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id.SPIFFEID.String(), Svid: token, Hint: id.Hint})
	}
	if len(resp.Svids) == 0 {
		w.deny(c, sels, "requested SPIFFE ID "+want.String()+" is not the caller's", nil)
		return nil, errNoIdentity
	}
	return resp, nil
}

// normalizeAudience checks audience and returns it sorted without
// duplicates: the order of an audience does not change what a token proves.
func normalizeAudience(audience []string) ([]string, error) {
	if len(audience) == 0 {
		return nil, errNoAudience
	}
	if slices.Contains(audience, "") {
		return nil, status.Error(codes.InvalidArgument, "audience must not contain an empty value")
	}
	out := slices.Clone(audience)
	slices.Sort(out)
	return slices.Compact(out), nil
}

// jwtSVID returns a JWT-SVID for id and audience from the cache, or mints
// one. The minted token is checked before it is cached or served.
func (w *WorkloadAPI) jwtSVID(ctx context.Context, p *published, id *servedIdentity, audience []string) (string, error) {
	quoted := make([]string, len(audience))
	for i, a := range audience {
		quoted[i] = strconv.Quote(a)
	}
	key := jwtCacheKey{
		spiffeID: id.SPIFFEID.String(),
		audience: strings.Join(quoted, ","),
		ttl:      id.JWTTTL,
		jwks:     p.jwksSum,
	}
	now := w.now()
	if token, ok := w.jwts.get(key, now); ok {
		return token, nil
	}
	token, err := w.minter.MintJWTSVID(ctx, id.SPIFFEID, audience, id.JWTTTL)
	if err != nil {
		return "", err
	}
	svid, err := jwtsvid.ParseInsecure(token, audience)
	if err != nil {
		return "", fmt.Errorf("minted token: %w", err)
	}
	if svid.ID != id.SPIFFEID {
		return "", fmt.Errorf("minted token is for %s, want %s", svid.ID, id.SPIFFEID)
	}
	for _, a := range audience {
		if !slices.Contains(svid.Audience, a) {
			return "", fmt.Errorf("minted token lacks audience %q", a)
		}
	}
	if !svid.Expiry.After(now) {
		return "", fmt.Errorf("minted token expired at %s", svid.Expiry)
	}
	w.jwts.put(key, token, now.Add(svid.Expiry.Sub(now)/2), now)
	return token, nil
}

// ValidateJWTSVID validates a JWT-SVID against the trust domain's JWT
// authorities and audience, and returns its SPIFFE ID and claims. Any
// caller may validate (as in SPIRE); an invalid token is InvalidArgument
// with the reason.
func (w *WorkloadAPI) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	c, err := w.newCaller(ctx, "ValidateJWTSVID")
	if err != nil {
		return nil, err
	}
	if req.GetAudience() == "" {
		return nil, errNoAudience
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	p := w.state.load()
	if p.state == nil {
		return nil, errNotReady
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), p.state.Bundle, []string{req.GetAudience()})
	if err != nil {
		w.log.LogAttrs(ctx, slog.LevelInfo, "JWT-SVID rejected",
			slog.String(logKeyRPC, c.rpc),
			slog.Int(logKeyPID, int(c.peer.PID)),
			slog.Uint64(logKeyUID, uint64(c.peer.UID)),
			slog.String(logKeyError, err.Error()))
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := claimsStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "JWT-SVID claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}

// claimsStruct converts JWT claims through JSON, which is what they were.
func claimsStruct(claims map[string]any) (*structpb.Struct, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// jwtCache holds minted JWT-SVIDs until their refresh time (half their
// lifetime), bounded to max entries. Its key includes the JWKS the token was
// minted under, so a JWT authority rotation is not answered with tokens
// signed by a key about to leave the bundle.
type jwtCache struct {
	mu      sync.Mutex
	max     int
	entries map[jwtCacheKey]jwtCacheEntry
}

type jwtCacheKey struct {
	spiffeID string
	audience string // sorted, quoted, comma-joined
	ttl      time.Duration
	jwks     [32]byte
}

type jwtCacheEntry struct {
	token     string
	refreshAt time.Time
}

func newJWTCache(limit int) *jwtCache {
	return &jwtCache{max: limit, entries: make(map[jwtCacheKey]jwtCacheEntry)}
}

func (c *jwtCache) get(key jwtCacheKey, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.refreshAt) {
		return "", false
	}
	return e.token, true
}

// put stores a token. When full it drops the entries due for refresh, then,
// if still full, the one due soonest.
func (c *jwtCache) put(key jwtCacheKey, token string, refreshAt, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.refreshAt) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			var (
				soonest jwtCacheKey
				at      time.Time
			)
			for k, e := range c.entries {
				if at.IsZero() || e.refreshAt.Before(at) {
					soonest, at = k, e.refreshAt
				}
			}
			delete(c.entries, soonest)
		}
	}
	c.entries[key] = jwtCacheEntry{token: token, refreshAt: refreshAt}
}

func (c *jwtCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
