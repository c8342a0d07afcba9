package httpnorm

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParsePolicies(t *testing.T) {
	tests := []struct {
		name    string
		parse   func(string) (string, error) // returns the parsed policy's String
		word    string
		wantErr string
	}{
		{name: "slash reject", parse: parseSlash, word: "reject"},
		{name: "slash keep", parse: parseSlash, word: "keep"},
		{name: "slash decode", parse: parseSlash, word: "decode"},
		{name: "slash unknown", parse: parseSlash, word: "merge", wantErr: `unknown encoded-slash policy "merge": want reject, keep or decode`},
		{name: "slash empty", parse: parseSlash, word: "", wantErr: `unknown encoded-slash policy ""`},
		{name: "slash wrong case", parse: parseSlash, word: "Keep", wantErr: `unknown encoded-slash policy "Keep"`},
		{name: "backslash reject", parse: parseBackslash, word: "reject"},
		{name: "backslash slash", parse: parseBackslash, word: "slash"},
		{name: "backslash unknown", parse: parseBackslash, word: "keep", wantErr: `unknown backslash policy "keep": want reject or slash`},
		{name: "param reject", parse: parseParam, word: "reject"},
		{name: "param keep", parse: parseParam, word: "keep"},
		{name: "param unknown", parse: parseParam, word: "strip", wantErr: `unknown path-parameter policy "strip": want reject or keep`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.word)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse(%q): got %q, %v; want error containing %q", tt.word, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.word {
				t.Errorf("parse(%q): got %q, %v; want %q", tt.word, got, err, tt.word)
			}
		})
	}
}

func parseSlash(s string) (string, error) {
	p, err := ParseSlashPolicy(s)
	return p.String(), err
}

func parseBackslash(s string) (string, error) {
	p, err := ParseBackslashPolicy(s)
	return p.String(), err
}

func parseParam(s string) (string, error) {
	p, err := ParseParamPolicy(s)
	return p.String(), err
}

func TestPolicyStringUnknown(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{name: "slash", got: SlashPolicy(7).String(), want: "SlashPolicy(7)"},
		{name: "backslash", got: BackslashPolicy(7).String(), want: "BackslashPolicy(7)"},
		{name: "param", got: ParamPolicy(7).String(), want: "ParamPolicy(7)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestPoliciesInConfig checks that the policies read and write as their
// words in a configuration file (JSON here; sigs.k8s.io/yaml goes through
// JSON too).
func TestPoliciesInConfig(t *testing.T) {
	type config struct {
		EncodedSlashes SlashPolicy     `json:"encodedSlashes"`
		Backslashes    BackslashPolicy `json:"backslashes"`
		PathParams     ParamPolicy     `json:"pathParams"`
	}
	const in = `{"encodedSlashes":"decode","backslashes":"slash","pathParams":"keep"}`
	var c config
	if err := json.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := config{DecodeEncodedSlashes, BackslashToSlash, KeepPathParams}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	out, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != in {
		t.Errorf("got %s, want %s", out, in)
	}

	if err := json.Unmarshal([]byte(`{"encodedSlashes":"allow"}`), &c); err == nil || !strings.Contains(err.Error(), `"allow"`) {
		t.Errorf("unknown word: got %v, want an error naming it", err)
	}
	if _, err := json.Marshal(config{EncodedSlashes: 9}); err == nil {
		t.Error("marshal unknown policy: got nil error, want one")
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		opt     Options
		wantErr string
	}{
		{name: "zero", opt: Options{}},
		{name: "all relaxed", opt: Options{EncodedSlashes: DecodeEncodedSlashes, Backslashes: BackslashToSlash, KeepDuplicateSlashes: true, PathParams: KeepPathParams, LowercasePath: true}},
		{name: "bad slash", opt: Options{EncodedSlashes: 3}, wantErr: "unknown encoded-slash policy 3"},
		{name: "bad backslash", opt: Options{Backslashes: 2}, wantErr: "unknown backslash policy 2"},
		{name: "bad param", opt: Options{PathParams: 2}, wantErr: "unknown path-parameter policy 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opt.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got %v, want nil", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}
