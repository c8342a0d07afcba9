package httpnorm

import (
	"net/netip"
	"strings"
)

// Host normalizes an authority or Host header value into the host name that
// policies match: the port is stripped ("[::1]:80" is "[::1]"), letters are
// lowercased, one trailing dot is removed ("Example.COM." is "example.com")
// and an IPv6 literal is written in RFC 5952 form, in brackets. It rejects
// ("bad-host") an empty host, whitespace and control characters, userinfo
// ('@'), a port that is empty, not decimal or outside 1-65535, IPv6 zones,
// empty labels, and any character but letters, digits, '-', '.' and '_'
// (stricter than RFC 3986 reg-name: no DNS name needs the rest, and each one
// is a way to make two parsers split the host differently). A name whose
// last label is numeric must be a canonical dotted-quad IPv4 address,
// because browsers and inet_aton read "127.1" or "0x7f.0.0.1" as 127.0.0.1.
// The result is a fixed point: Host(Host(h)) == Host(h).
func Host(hostport string) (string, error) {
	if hostport == "" {
		return "", badHost("empty host")
	}
	for i := range len(hostport) {
		switch c := hostport[i]; {
		case c <= ' ' || c == 0x7f:
			return "", badHost("whitespace or control character")
		case c >= 0x80:
			return "", badHost("non-ASCII character (IDNs must be sent as punycode)")
		case c == '@':
			return "", badHost("userinfo ('@') is not allowed")
		}
	}
	if hostport[0] == '[' {
		return ipv6Host(hostport)
	}
	host, port, hasPort := strings.Cut(hostport, ":")
	if hasPort {
		if err := checkPort(port); err != nil {
			return "", err
		}
	}
	return regName(host)
}

// ipv6Host normalizes "[v6]" or "[v6]:port".
func ipv6Host(hostport string) (string, error) {
	end := strings.IndexByte(hostport, ']')
	if end < 0 {
		return "", badHost("'[' without ']'")
	}
	if rest := hostport[end+1:]; rest != "" {
		if rest[0] != ':' {
			return "", badHost("unexpected characters after ']'")
		}
		if err := checkPort(rest[1:]); err != nil {
			return "", err
		}
	}
	addr, err := netip.ParseAddr(hostport[1:end])
	switch {
	case err != nil:
		return "", badHost("invalid IPv6 literal")
	case !addr.Is6():
		return "", badHost("IPv4 address in brackets")
	case addr.Zone() != "":
		// A zone names an interface of the client; it means nothing to
		// the server and is one more spelling of the same address.
		return "", badHost("IPv6 zone is not allowed")
	}
	// Append to a stack buffer, longer than any bracketed IPv6 literal
	// without a zone, so that an already-canonical one costs no allocation.
	var buf [48]byte
	canon := append(addr.AppendTo(append(buf[:0], '[')), ']')
	if string(canon) == hostport[:end+1] {
		return hostport[:end+1], nil
	}
	return string(canon), nil
}

// checkPort accepts 1 to 5 decimal digits of a value from 1 to 65535. An
// empty port is valid RFC 3986 but some parsers then keep the ':' in the
// host, so it is refused.
func checkPort(port string) error {
	if port == "" || len(port) > 5 {
		return badHost("port must be 1 to 5 digits")
	}
	v := 0
	for i := range len(port) {
		c := port[i]
		if c < '0' || c > '9' {
			return badHost("port must be decimal digits")
		}
		v = v*10 + int(c-'0')
	}
	if v == 0 || v > 65535 {
		return badHost("port out of range 1-65535")
	}
	return nil
}

// regName normalizes a DNS name or an IPv4 address (without a port).
func regName(host string) (string, error) {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return "", badHost("empty host")
	}
	if len(host) > 253 {
		return "", badHost("name longer than 253 characters")
	}
	upper := false
	labelStart := 0
	for i := 0; i <= len(host); i++ {
		if i == len(host) || host[i] == '.' {
			switch n := i - labelStart; {
			case n == 0:
				return "", badHost("empty label")
			case n > 63:
				return "", badHost("label longer than 63 characters")
			}
			labelStart = i + 1
			continue
		}
		switch c := host[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return "", badHost("character not allowed in a host name")
		}
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if numeric(last) {
		addr, err := netip.ParseAddr(host)
		if err != nil || !addr.Is4() {
			return "", badHost("numeric name that is not a dotted-quad IPv4 address")
		}
	}
	if upper {
		return strings.ToLower(host), nil
	}
	return host, nil
}

// numeric reports whether a label is one the WHATWG URL standard parses as
// an IPv4 number: decimal digits, or "0x" and hex digits.
func numeric(label string) bool {
	if len(label) >= 2 && label[0] == '0' && (label[1] == 'x' || label[1] == 'X') {
		for i := 2; i < len(label); i++ {
			if _, ok := fromHex(label[i]); !ok {
				return false
			}
		}
		return true
	}
	for i := range len(label) {
		if label[i] < '0' || label[i] > '9' {
			return false
		}
	}
	return label != ""
}
