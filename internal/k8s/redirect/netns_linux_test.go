package redirect

import (
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread of its own in a new, empty network
// namespace; commands f starts run there too. The thread is never handed
// back to the runtime, which ends it when f returns.
func inNetns(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	skipped := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skipped <- "cannot create a network namespace: " + err.Error()
			return
		}
		f()
	}()
	<-done
	select {
	case why := <-skipped:
		t.Skip(why)
	default:
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install iptables iproute2): rule generation is tested, applying is not", name)
	}
	return p
}

// TestApplyInNetns applies the rules with the real iptables-restore in a
// fresh network namespace, twice (trustmesh-init may run again in the same
// pod), reads them back with iptables-save, and checks that an outbound
// connection of the app reaches the proxy's outbound listener.
func TestApplyInNetns(t *testing.T) {
	restore, save, ip := lookPath(t, "iptables-restore"), lookPath(t, "iptables-save"), lookPath(t, "ip")
	cfg := injected
	cfg.OutboundPort, cfg.OutboundPorts = 15001, Ports{List: []uint16{80}}
	rules, err := Rules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inNetns(t, func() {
		for i := range 2 {
			if err := Apply(ctx, restore, rules); err != nil {
				t.Errorf("Apply #%d: %v", i+1, err)
				return
			}
		}
		out, err := exec.CommandContext(ctx, save, "-t", "nat").CombinedOutput()
		if err != nil {
			t.Errorf("iptables-save: %v: %s", err, out)
			return
		}
		if diff := cmp.Diff(uncomment(rules), uncomment(out)); diff != "" {
			t.Errorf("iptables-save after applying twice differs from the rules (-want +got):\n%s", diff)
		}

		// A tun link nobody reads, with a default route, so that
		// connect() to a remote address gets past routing; nothing
		// leaves the namespace.
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"tuntap", "add", "tm0", "mode", "tun"},
			{"addr", "add", "192.0.2.2/24", "dev", "tm0"},
			{"link", "set", "tm0", "up"},
			{"route", "add", "default", "via", "192.0.2.1"},
		} {
			if out, err := exec.CommandContext(ctx, ip, args...).CombinedOutput(); err != nil {
				t.Errorf("ip %v: %v: %s", args, err, out)
				return
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:15001")
		if err != nil {
			t.Error(err)
			return
		}
		defer ln.Close()
		accepted := make(chan error, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, err = io.WriteString(c, "proxy")
				c.Close()
			}
			accepted <- err
		}()
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", "192.0.2.1:80")
		if err != nil {
			t.Errorf("dial 192.0.2.1:80: %v, want it redirected to the outbound listener", err)
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "proxy" {
			t.Errorf("read from the redirected connection: got %q, %v; want \"proxy\"", got, err)
		}
		if err := <-accepted; err != nil {
			t.Errorf("accept: %v", err)
		}
	})
}

func TestApplyReportsFailure(t *testing.T) {
	err := Apply(t.Context(), "false", []byte("*nat\nCOMMIT\n"))
	if err == nil {
		t.Fatal("Apply with a failing iptables-restore: got no error")
	}
}
