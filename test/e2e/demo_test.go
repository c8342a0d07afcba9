package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's demo scenario (scripts/demo.sh --once) against
// the binary under test, so the quick start cannot silently rot.
func TestDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../scripts/demo.sh", "--once")
	// A port range of its own: 100 ports from a base chosen by pid, below
	// Linux's ephemeral range (32768 on): the other tests' listeners on
	// port 0 and every outgoing connection take ports from that range, and
	// one of them once took a port the demo wanted.
	base := 10000 + (os.Getpid()%220)*100
	cmd.Env = append(os.Environ(), "TM="+binary, "DEMO_BIN="+t.TempDir(), fmt.Sprintf("DEMO_PORT_BASE=%d", base))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo --once failed: %v\n%s", err, out)
	}
	for _, want := range []string{"each hop saw its caller's verified SPIFFE ID", "plaintext to payments' proxy refused", "demo: all checks passed."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
