package serveraddr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// MaxAddrs bounds the list: a control plane has a handful of replicas, and
// every address is a connection attempt when they are all down.
const MaxAddrs = 16

// example is shown in every parse error.
const example = "10.0.0.1:8443,[fd00::2]:8443,cp-3.example.org:8443"

// Parse reads server addresses from flag values. Each value is one HOST:PORT
// or a comma-separated list of them, so "--server a:8443,b:8443" and
// "--server a:8443 --server b:8443" give the same list. Spaces around an
// entry are ignored. HOST is an IPv4 address, an IPv6 address in brackets or a
// DNS name; PORT is a number. Empty entries, duplicates and more than
// MaxAddrs entries are refused, with an error naming the entry.
//
// The result keeps the order given and is itself valid input to Parse.
func Parse(values ...string) ([]string, error) {
	if strings.TrimSpace(strings.Join(values, "")) == "" {
		return nil, fmt.Errorf("no server address given; want HOST:PORT or a comma-separated list, e.g. %s", example)
	}
	var out []string
	seen := map[string]int{} // normalized entry -> 1-based position
	for _, v := range values {
		for raw := range strings.SplitSeq(v, ",") {
			n := len(out) + 1
			entry := strings.TrimSpace(raw)
			if entry == "" {
				return nil, fmt.Errorf("server address %d is empty (a stray comma?); want HOST:PORT, e.g. %s", n, example)
			}
			if n > MaxAddrs {
				return nil, fmt.Errorf("more than %d server addresses (from %q on)", MaxAddrs, entry)
			}
			key, err := normalize(entry)
			if err != nil {
				return nil, fmt.Errorf("server address %d %q: %w; want HOST:PORT, e.g. %s", n, entry, err, example)
			}
			if first, dup := seen[key]; dup {
				return nil, fmt.Errorf("server address %d %q is the same as address %d", n, entry, first)
			}
			seen[key] = n
			out = append(out, entry)
		}
	}
	return out, nil
}

// normalize checks one HOST:PORT and returns the form duplicates are
// compared in: IP addresses canonical, names lowercase.
func normalize(entry string) (string, error) {
	bracketed := strings.HasPrefix(entry, "[")
	if !bracketed && strings.Count(entry, ":") > 1 {
		return "", errors.New("too many colons (an IPv6 address must be in brackets)")
	}
	host, port, err := net.SplitHostPort(entry)
	if err != nil {
		if (!bracketed && !strings.Contains(entry, ":")) || (bracketed && strings.HasSuffix(entry, "]")) {
			return "", errors.New("missing :PORT")
		}
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", errors.New(ae.Err) // without the address, which the caller names
		}
		return "", err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if host == "" {
		return "", errors.New("missing HOST")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		// Unbracketed, an IPv6 address fails SplitHostPort above.
		if bracketed && !ip.Is6() {
			return "", errors.New("brackets are for IPv6 addresses only")
		}
		if z := ip.Zone(); strings.IndexFunc(z, notNameChar) >= 0 {
			return "", fmt.Errorf("zone %q is not an interface name", z)
		}
		return net.JoinHostPort(ip.String(), strconv.FormatUint(p, 10)), nil
	}
	if bracketed {
		return "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
	}
	if err := checkName(host); err != nil {
		return "", err
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), strconv.FormatUint(p, 10)), nil
}

// checkName accepts DNS names: dot-separated labels of letters, digits,
// '-' and '_' (service names), not starting or ending with '-', 63 bytes
// at most each and 253 in all, with an optional final dot. A name whose
// last label is all digits is a malformed IPv4 address ("10.0.0", "010.0.0.1"),
// which resolvers interpret in different ways: refused.
func checkName(host string) error {
	name := strings.TrimSuffix(host, ".")
	if len(name) > 253 {
		return errors.New("host name is longer than 253 characters")
	}
	if last := name[strings.LastIndexByte(name, '.')+1:]; last != "" && strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("host %q is not a valid IPv4 address", host)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return fmt.Errorf("host %q has an empty label", host)
		}
		if len(label) > 63 {
			return fmt.Errorf("host %q has a label longer than 63 characters", host)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q has a label starting or ending with '-'", host)
		}
		if strings.IndexFunc(label, notNameChar) >= 0 {
			return fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
		}
	}
	return nil
}

func notNameChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		return false
	}
	return true
}
