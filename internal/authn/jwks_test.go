package authn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseJWKS(t *testing.T) {
	k := tk(t)
	rsa := jwkOf(t, k.rsaA, "rsa", nil)
	tests := []struct {
		name        string
		jwks        string
		wantKids    []string // usable keys, in order
		wantSkipped []string // one substring per skipped entry
		wantErr     string   // non-strict parse
	}{
		{name: "one of each type", jwks: jwksJSON(t, rsa, jwkOf(t, k.ec256, "ec", nil), jwkOf(t, k.ec384, "ec384", nil), jwkOf(t, k.ed, "ed", nil)), wantKids: []string{"rsa", "ec", "ec384", "ed"}},
		{name: "hmac key skipped", jwks: jwksJSON(t, rsa, map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}), wantKids: []string{"rsa"}, wantSkipped: []string{"HMAC is never accepted"}},
		{name: "encryption key skipped", jwks: jwksJSON(t, rsa, jwkOf(t, k.rsaB, "enc", map[string]any{"use": "enc"})), wantKids: []string{"rsa"}, wantSkipped: []string{`use "enc" is not sig`}},
		{name: "key_ops without verify skipped", jwks: jwksJSON(t, rsa, jwkOf(t, k.rsaB, "ops", map[string]any{"key_ops": []string{"encrypt"}})), wantKids: []string{"rsa"}, wantSkipped: []string{`key_ops has no "verify"`}},
		{name: "key for hs256 skipped", jwks: jwksJSON(t, rsa, jwkOf(t, k.rsaB, "hs", map[string]any{"alg": "HS256"})), wantKids: []string{"rsa"}, wantSkipped: []string{`alg "HS256" is not allowed`}},
		{name: "weak rsa key skipped", jwks: jwksJSON(t, rsa, jwkOf(t, k.rsa1024, "weak", nil)), wantKids: []string{"rsa"}, wantSkipped: []string{"1024 bits"}},
		{name: "private key skipped", jwks: jwksJSON(t, rsa, jwkOf(t, k.ed, "priv", map[string]any{"d": b64u(k.ed.Seed())})), wantKids: []string{"rsa"}, wantSkipped: []string{"private key material"}},
		{name: "x25519 key skipped", jwks: jwksJSON(t, rsa, map[string]any{"kty": "OKP", "crv": "X25519", "x": b64u(make([]byte, 32))}), wantKids: []string{"rsa"}, wantSkipped: []string{"key 1"}},
		{name: "unknown kty skipped", jwks: jwksJSON(t, rsa, map[string]any{"kty": "PQC"}), wantKids: []string{"rsa"}, wantSkipped: []string{`unsupported key type "PQC"`}},
		{name: "invalid key skipped when not strict", jwks: jwksJSON(t, rsa, map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}), wantKids: []string{"rsa"}, wantSkipped: []string{"key 1"}},
		{name: "kid not a string", jwks: jwksJSON(t, rsa, jwkOf(t, k.rsaB, "", map[string]any{"kid": 7})), wantKids: []string{"rsa"}, wantSkipped: []string{`"kid" is not a string`}},
		{name: "only unusable keys", jwks: jwksJSON(t, map[string]any{"kty": "oct", "k": "c2VjcmV0"}), wantErr: "no usable signing key"},
		{name: "empty set", jwks: `{"keys":[]}`, wantErr: "no keys"},
		{name: "keys not an array", jwks: `{"keys":{}}`, wantErr: `no "keys" array`},
		{name: "a single jwk is not a set", jwks: string(mustJSON(t, rsa)), wantErr: `no "keys" array`},
		{name: "duplicate member", jwks: `{"keys":[],"keys":[]}`, wantErr: "duplicate member"},
		{name: "too deep", jwks: `{"keys":[],"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, wantErr: "nested more than"},
		{name: "trailing data", jwks: `{"keys":[]} {}`, wantErr: "data after the object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := parseJWKS([]byte(tt.jwks), false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range set.keys {
				kids = append(kids, k.kid)
			}
			if got, want := strings.Join(kids, ","), strings.Join(tt.wantKids, ","); got != want {
				t.Errorf("got usable kids %q, want %q", got, want)
			}
			if len(set.skipped) != len(tt.wantSkipped) {
				t.Fatalf("got skipped %q, want %d", set.skipped, len(tt.wantSkipped))
			}
			for i, want := range tt.wantSkipped {
				if !strings.Contains(set.skipped[i], want) {
					t.Errorf("got skipped[%d] %q, want it to contain %q", i, set.skipped[i], want)
				}
			}
		})
	}
}

// The fixtures in testdata are real-world shaped JWKS documents.
func TestParseJWKSFixtures(t *testing.T) {
	tests := []struct {
		file     string
		wantKeys int
		wantErr  string
	}{
		{file: "jwks-mixed-sig-and-enc.json", wantKeys: 2},
		{file: "jwks-too-many-keys.json", wantErr: "more than the 100 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			set, err := parseJWKS(data, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(set.keys); got != tt.wantKeys {
				t.Errorf("got %d usable keys, want %d (skipped: %q)", got, tt.wantKeys, set.skipped)
			}
		})
	}
}
