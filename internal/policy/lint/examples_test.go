package lint

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trustmesh/trustmesh/internal/policy"
)

// TestExamplesLintWithoutErrors lints the objects of the YAML files under
// examples/ together and fails on error-level findings. It is skipped
// while no file there holds an AuthorizationPolicy.
func TestExamplesLintWithoutErrors(t *testing.T) {
	root := filepath.Join("..", "..", "..", "examples")
	var in Input
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (!strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte("apiVersion: trustmesh.dev/")) {
			return nil // not trustmesh objects
		}
		objs, err := policy.Decode(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		for _, o := range objs {
			switch o := o.(type) {
			case *policy.AuthorizationPolicy:
				in.Policies = append(in.Policies, o)
			case *policy.RequestAuthentication:
				in.RequestAuthentications = append(in.RequestAuthentications, o)
			case *policy.Workload:
				in.Workloads = append(in.Workloads, o)
			case *policy.Service:
				in.Services = append(in.Services, o)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", root, err)
	}
	if len(in.Policies) == 0 {
		t.Skipf("no AuthorizationPolicy in the YAML files under %s", root)
	}
	for _, f := range Lint(in) {
		if f.Severity == Error {
			t.Errorf("got error-level finding %s, want none in the examples", f)
		}
	}
}
