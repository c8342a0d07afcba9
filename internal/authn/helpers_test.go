package authn

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The signing side of the tests is written against the standard library
// only, independently of the code under test and of jwx.

// testKeyMaterial is the private keys the tests sign with.
type testKeyMaterial struct {
	rsaA, rsaB *rsa.PrivateKey
	rsa1024    *rsa.PrivateKey
	ec256      *ecdsa.PrivateKey
	ec384      *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
}

var (
	testKeysOnce sync.Once
	testKeys     testKeyMaterial
	testKeysErr  error
)

// tk returns the test keys: fixed PKCS#8 files in testdata (test-only
// keys, so fuzz workers and reruns share them and no test pays for RSA key
// generation).
func tk(tb testing.TB) *testKeyMaterial {
	tb.Helper()
	testKeysOnce.Do(func() {
		load := func(name string) any {
			data, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				testKeysErr = err
				return nil
			}
			block, _ := pem.Decode(data)
			if block == nil {
				testKeysErr = fmt.Errorf("%s: no pem block", name)
				return nil
			}
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				testKeysErr = fmt.Errorf("%s: %w", name, err)
			}
			return k
		}
		testKeys.rsaA, _ = load("test-key-rsa-a.pem").(*rsa.PrivateKey)
		testKeys.rsaB, _ = load("test-key-rsa-b.pem").(*rsa.PrivateKey)
		testKeys.rsa1024, _ = load("test-key-rsa-1024-weak.pem").(*rsa.PrivateKey)
		testKeys.ec256, _ = load("test-key-ec-p256.pem").(*ecdsa.PrivateKey)
		testKeys.ec384, _ = load("test-key-ec-p384.pem").(*ecdsa.PrivateKey)
		testKeys.ed, _ = load("test-key-ed25519.pem").(ed25519.PrivateKey)
	})
	if testKeysErr != nil {
		tb.Fatal(testKeysErr)
	}
	return &testKeys
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf is the public JWK of key (a private key) with kid and extra members.
func jwkOf(tb testing.TB, key any, kid string, extra map[string]any) map[string]any {
	tb.Helper()
	m := map[string]any{}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		m["kty"], m["n"], m["e"] = "RSA", b64u(k.N.Bytes()), b64u(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PrivateKey:
		raw, err := k.PublicKey.Bytes()
		if err != nil {
			tb.Fatal(err)
		}
		size := (len(raw) - 1) / 2
		m["kty"], m["crv"] = "EC", k.Curve.Params().Name
		m["x"], m["y"] = b64u(raw[1:1+size]), b64u(raw[1+size:])
	case ed25519.PrivateKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64u(k.Public().(ed25519.PublicKey))
	default:
		tb.Fatalf("jwkOf: unsupported key %T", key)
	}
	if kid != "" {
		m["kid"] = kid
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func jwksJSON(tb testing.TB, keys ...map[string]any) string {
	tb.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sign makes a compact JWS of the raw header and payload JSON. key is a
// private key, or []byte for HS*, or nil for "none" (empty signature).
func sign(tb testing.TB, alg string, key any, header, payload []byte) string {
	tb.Helper()
	input := b64u(header) + "." + b64u(payload)
	return input + "." + b64u(signature(tb, alg, key, []byte(input)))
}

func signature(tb testing.TB, alg string, key any, input []byte) []byte {
	tb.Helper()
	hashes := map[string]crypto.Hash{"256": crypto.SHA256, "384": crypto.SHA384, "512": crypto.SHA512}
	digest := func(h crypto.Hash) []byte {
		var w hash.Hash
		switch h {
		case crypto.SHA256:
			w = sha256.New()
		case crypto.SHA384:
			w = sha512.New384()
		default:
			w = sha512.New()
		}
		w.Write(input)
		return w.Sum(nil)
	}
	if alg == "none" {
		return nil
	}
	h := hashes[alg[len(alg)-3:]]
	switch {
	case strings.HasPrefix(alg, "RS"):
		sig, err := rsa.SignPKCS1v15(nil, key.(*rsa.PrivateKey), h, digest(h))
		if err != nil {
			tb.Fatal(err)
		}
		return sig
	case strings.HasPrefix(alg, "PS"):
		sig, err := rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), h, digest(h), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		if err != nil {
			tb.Fatal(err)
		}
		return sig
	case strings.HasPrefix(alg, "ES"):
		// Deterministic (RFC 6979, random nil): a token minted in one
		// fuzz worker is the same in every other.
		k := key.(*ecdsa.PrivateKey)
		der, err := k.Sign(nil, digest(h), h)
		if err != nil {
			tb.Fatal(err)
		}
		var rs struct{ R, S *big.Int }
		if _, err := asn1.Unmarshal(der, &rs); err != nil {
			tb.Fatal(err)
		}
		r, s := rs.R, rs.S
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out
	case strings.HasPrefix(alg, "HS"):
		m := hmac.New(map[crypto.Hash]func() hash.Hash{crypto.SHA256: sha256.New, crypto.SHA384: sha512.New384, crypto.SHA512: sha512.New}[h], key.([]byte))
		m.Write(input)
		return m.Sum(nil)
	case alg == "EdDSA":
		return ed25519.Sign(key.(ed25519.PrivateKey), input)
	}
	tb.Fatalf("sign: unsupported alg %q", alg)
	return nil
}

// mint signs claims with alg and key, with kid in the header if not "".
func mint(tb testing.TB, alg string, key any, kid string, claims map[string]any) string {
	tb.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	return sign(tb, alg, key, mustJSON(tb, h), mustJSON(tb, claims))
}

// fixedNow is the tests' clock.
var fixedNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

// claimsFor are typical valid claims of iss at fixedNow.
func claimsFor(iss string) map[string]any {
	return map[string]any{
		"iss": iss, "sub": "user-1", "aud": "orders",
		"iat": fixedNow.Add(-time.Minute).Unix(),
		"exp": fixedNow.Add(time.Hour).Unix(),
	}
}

func with(c map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
		} else {
			out[k] = kv[i+1]
		}
	}
	return out
}

// jwksServer is a JWKS endpoint whose answer the test sets.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	status   int
	body     string
	requests atomic.Int64
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// logBuffer is a slog handler target the tests read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// reasonOf is the Reason of err, "" for nil, and fails the test for an
// error that is not an *Error.
func reasonOf(t *testing.T, err error) Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	return e.Reason
}

// waitFor polls cond until it holds or the deadline passes: for a fetch
// that happens on Run's goroutine. Never a fixed sleep.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func request(t *testing.T, target string, header ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
