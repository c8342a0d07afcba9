//go:build linux

package attest

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Unix workload attestation.
//
// The kernel tells the Workload API server who is on the other end of its
// unix socket (SO_PEERCRED: pid, effective uid and gid at connect time).
// uid and gid come from the kernel and are always known. Everything else is
// read from /proc/PID, and a PID is only a number: the process can exit and
// the number can be handed to another process. So a PeerInfo also carries
// the process start time, read during the handshake, and UnixSelectors checks
// it before and after reading /proc: (PID, start time) names one process.
//
// Selectors that cannot be read (another user's process when the agent is
// not root, a process in another pid namespace, a deleted executable) are
// left out, never guessed: a registration that requires them then simply
// does not match.

// peerAuthType is the AuthType of the credentials.AuthInfo that
// PeerCredentials attaches to a connection.
const peerAuthType = "unix-peercred"

// hashCacheSize bounds the executable-hash cache: one entry per distinct
// executable file seen recently, so a few hundred is plenty for a node.
const hashCacheSize = 256

// PeerInfo is what the kernel reports about the process at the other end of
// a unix socket, captured when the connection was set up.
type PeerInfo struct {
	PID      int32
	UID, GID uint32
	// StartTime is the process start time (clock ticks after boot, field 22
	// of /proc/PID/stat), read during the handshake. A PID can be reused; a
	// (PID, StartTime) pair names one process. Zero means unknown, and
	// UnixSelectors refuses such a PeerInfo.
	StartTime uint64
}

// PeerCredentials returns gRPC transport credentials for a server listening
// on a unix socket. The handshake reads the peer's SO_PEERCRED and start time
// and fails for anything that is not a unix socket; PeerFromContext then
// gives the caller to every RPC handler. Nothing is encrypted: the socket
// never leaves the host.
//
// Used by a client, the credentials report the server process instead, which
// lets a workload check who it is talking to (for example that the agent runs
// as root).
func PeerCredentials() credentials.TransportCredentials { return peerCredentials{} }

type peerCredentials struct{}

var _ credentials.TransportCredentials = peerCredentials{}

func (peerCredentials) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info, err := readPeer(conn, true)
	if err != nil {
		return nil, nil, fmt.Errorf("unix peer credentials: %w", err)
	}
	return conn, newAuthInfo(info), nil
}

// ClientHandshake reports the server process. The server may live in another
// pid namespace (PID 0) or be unreadable in /proc; that is not an error for a
// client, which then sees PID or StartTime zero.
func (peerCredentials) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info, err := readPeer(conn, false)
	if err != nil {
		return nil, nil, fmt.Errorf("unix peer credentials: %w", err)
	}
	return conn, newAuthInfo(info), nil
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: peerAuthType}
}

func (peerCredentials) Clone() credentials.TransportCredentials { return peerCredentials{} }

// OverrideServerName is a no-op: a unix socket has no server name to check.
func (peerCredentials) OverrideServerName(string) error { return nil }

// authInfo is the credentials.AuthInfo of a connection accepted by
// PeerCredentials.
type authInfo struct {
	credentials.CommonAuthInfo
	peer PeerInfo
}

func newAuthInfo(p PeerInfo) authInfo {
	// A unix socket cannot be observed or altered off the host, the same
	// reasoning as grpc's credentials/local.
	return authInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		peer:           p,
	}
}

func (authInfo) AuthType() string { return peerAuthType }

// PeerFromContext returns the peer of the RPC in ctx, if its connection was
// set up by PeerCredentials.
func PeerFromContext(ctx context.Context) (PeerInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return PeerInfo{}, false
	}
	ai, ok := p.AuthInfo.(authInfo)
	if !ok {
		return PeerInfo{}, false
	}
	return ai.peer, true
}

// readPeer reads SO_PEERCRED and the peer's start time. strict (the server
// side) requires both; otherwise what cannot be read is left zero.
func readPeer(conn net.Conn, strict bool) (PeerInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return PeerInfo{}, fmt.Errorf("connection is a %T, not a unix socket", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerInfo{}, fmt.Errorf("raw connection: %w", err)
	}
	var (
		cred    *unix.Ucred
		credErr error
		pidfd   = -1
	)
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			// Linux 6.5+: a handle on the very process that connected.
			if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = pfd
			}
		}
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return PeerInfo{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	if pidfd >= 0 {
		defer func() { _ = unix.Close(pidfd) }()
	}
	info := PeerInfo{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	if info.PID <= 0 {
		if strict {
			return PeerInfo{}, errors.New("peer pid is not visible from this pid namespace")
		}
		return info, nil
	}
	start, err := peerStartTime(info.PID, pidfd)
	if err != nil {
		if strict {
			return PeerInfo{}, fmt.Errorf("peer pid %d: %w", info.PID, err)
		}
		return info, nil
	}
	info.StartTime = start
	return info, nil
}

// peerStartTime reads the start time of the process that connected.
//
// With a pidfd (SO_PEERPIDFD) the read is exact: while the pidfd's fdinfo
// still shows pid, the process has not been reaped, so pid has not been
// reused and the /proc/PID/stat we read was that process's. Without one
// (older kernels) we read /proc/PID/stat directly; a pid reused between
// connect and accept would go unnoticed, which needs the attacker to cycle
// through the whole pid space in that window.
func peerStartTime(pid int32, pidfd int) (uint64, error) {
	start, err := procStartTime(pid)
	if err != nil {
		return 0, err
	}
	if pidfd < 0 {
		return start, nil
	}
	got, err := pidfdPID(pidfd)
	if err != nil {
		return 0, err
	}
	if got != pid {
		return 0, fmt.Errorf("process exited during the handshake (pidfd reports pid %d)", got)
	}
	return start, nil
}

// pidfdPID returns the pid a pidfd refers to: -1 once the process is reaped.
func pidfdPID(pidfd int) (int32, error) {
	f, err := os.Open("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, fmt.Errorf("pidfd fdinfo: %w", err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Pid:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return 0, fmt.Errorf("pidfd fdinfo: bad Pid line %q", sc.Text())
			}
			return int32(n), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("pidfd fdinfo: %w", err)
	}
	return 0, errors.New("pidfd fdinfo: no Pid line")
}

// UnixSelectors attests the process p describes:
//
//	unix:uid:N          always (from the kernel)
//	unix:gid:N          always (from the kernel)
//	unix:user:NAME      when the uid has a name
//	unix:path:/abs/exe  when the running executable's path can be read and
//	                    still names the file that is running
//	unix:sha256:HEX     when the running executable can be read
//
// It fails when the process is gone or is not the one p was captured from;
// selectors are never taken from another process. p must come from
// PeerFromContext (StartTime set). Every selector returned passes
// ParseSelector.
func UnixSelectors(p PeerInfo) ([]Selector, error) {
	return defaultUnixAttestor.selectors(p)
}

// defaultUnixAttestor holds the process-wide executable-hash cache. Its
// entries are facts about file contents keyed by inode identity, the same for
// every caller, so sharing one cache is safe.
var defaultUnixAttestor = newUnixAttestor(hashCacheSize)

type unixAttestor struct {
	hashes *hashCache
}

func newUnixAttestor(cacheSize int) *unixAttestor {
	return &unixAttestor{hashes: newHashCache(cacheSize)}
}

func (a *unixAttestor) selectors(p PeerInfo) ([]Selector, error) {
	if p.PID <= 0 {
		return nil, fmt.Errorf("attest pid %d: not a process", p.PID)
	}
	if p.StartTime == 0 {
		return nil, fmt.Errorf("attest pid %d: start time unknown (peer not captured by PeerCredentials)", p.PID)
	}
	// The start time brackets every /proc read below. Before: the pid still
	// belongs to the process that connected (not a newer one that got the
	// same number). After: it did not exit and get replaced while we read.
	// Without this a workload could connect, exit, and have its pid taken by
	// a process whose executable earns a better identity.
	if err := checkSameProcess(p); err != nil {
		return nil, err
	}

	sels := []Selector{
		{Type: "unix", Value: "uid:" + strconv.FormatUint(uint64(p.UID), 10)},
		{Type: "unix", Value: "gid:" + strconv.FormatUint(uint64(p.GID), 10)},
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(p.UID), 10)); err == nil {
		sels = appendValid(sels, "unix:user:"+u.Username)
	}
	sels = append(sels, a.exeSelectors(p.PID)...)

	if err := checkSameProcess(p); err != nil {
		return nil, err
	}
	return sels, nil
}

func checkSameProcess(p PeerInfo) error {
	start, err := procStartTime(p.PID)
	if err != nil {
		return fmt.Errorf("attest pid %d: %w", p.PID, err)
	}
	if start != p.StartTime {
		return fmt.Errorf("attest pid %d: the process that connected has exited and its pid was reused", p.PID)
	}
	return nil
}

// appendValid appends the selector s if it is valid, so that a user name a
// registration could not spell is left out rather than served.
func appendValid(sels []Selector, s string) []Selector {
	sel, err := ParseSelector(s)
	if err != nil {
		return sels
	}
	return append(sels, sel)
}

// exeSelectors returns the path and sha256 selectors of pid's executable, or
// what of them can be read.
func (a *unixAttestor) exeSelectors(pid int32) []Selector {
	exe := "/proc/" + strconv.Itoa(int(pid)) + "/exe"
	// Opening the magic link opens the file the process is running, even if
	// the path on disk now names another file or none: we hash what runs.
	f, err := os.Open(exe)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}

	var sels []Selector
	if target, err := os.Readlink(exe); err == nil && path.IsAbs(target) {
		// The link text is only a name (with " (deleted)" appended once the
		// file is gone). Serve it only if, resolved inside the process's own
		// root, it is still the file that runs.
		rfi, err := os.Stat("/proc/" + strconv.Itoa(int(pid)) + "/root" + target)
		if err == nil && os.SameFile(fi, rfi) {
			sels = appendValid(sels, "unix:path:"+target)
		}
	}
	if sum, ok := a.hashes.sum(f, fi); ok {
		sels = append(sels, Selector{Type: "unix", Value: "sha256:" + sum})
	}
	return sels
}

// procStartTime returns field 22 (starttime) of /proc/PID/stat, failing when
// the process is gone or a zombie.
func procStartTime(pid int32) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, errors.New("process is gone")
		}
		return 0, err
	}
	start, state, err := parseStat(b)
	if err != nil {
		return 0, err
	}
	if state == 'Z' || state == 'X' {
		return 0, errors.New("process has exited")
	}
	return start, nil
}

// parseStat parses the state (field 3) and starttime (field 22) of a
// /proc/PID/stat line: "pid (comm) state ppid ...". comm is chosen by the
// process and may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseStat(b []byte) (start uint64, state byte, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed /proc stat: no ')'")
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state), so field 22 is fields[19].
	const startIdx = 22 - 3
	if len(fields) <= startIdx || len(fields[0]) != 1 {
		return 0, 0, errors.New("malformed /proc stat: too few fields")
	}
	start, err = strconv.ParseUint(fields[startIdx], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc stat starttime: %w", err)
	}
	return start, fields[0][0], nil
}

// fileKey identifies one version of a file's contents without reading it.
// ctime is there because mtime can be set back by the file's owner (touch
// -d) after rewriting it; ctime cannot be set and moves on every change.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev:   uint64(st.Dev), //nolint:unconvert // Stat_t.Dev is uint32 on some architectures
		ino:   st.Ino,
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}, true
}

// hashCache is a bounded LRU of executable hashes. Hashing a large binary on
// every call would make every Workload API request cost a full read of it.
type hashCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *hashEntry, most recently used first
	items map[fileKey]*list.Element

	hashed atomic.Int64 // files actually read, for tests
}

type hashEntry struct {
	key fileKey
	sum string
}

func newHashCache(limit int) *hashCache {
	return &hashCache{max: limit, ll: list.New(), items: make(map[fileKey]*list.Element)}
}

// sum returns the hex sha256 of the open file f (whose Stat is fi), from the
// cache when its key matches. ok is false when it cannot be read or changed
// while it was read.
func (c *hashCache) sum(f *os.File, fi os.FileInfo) (string, bool) {
	key, ok := keyOf(fi)
	if !ok {
		return "", false
	}
	if s, ok := c.get(key); ok {
		return s, true
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false
	}
	c.hashed.Add(1)
	// A file rewritten while we read it has no single hash to attest.
	after, err := f.Stat()
	if err != nil {
		return "", false
	}
	if k2, ok := keyOf(after); !ok || k2 != key {
		return "", false
	}
	s := hex.EncodeToString(h.Sum(nil))
	c.put(key, s)
	return s, true
}

func (c *hashCache) get(key fileKey) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[key]
	if !ok {
		return "", false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*hashEntry).sum, true
}

func (c *hashCache) put(key fileKey, sum string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[key] = c.ll.PushFront(&hashEntry{key: key, sum: sum})
	for c.ll.Len() > c.max {
		oldest := c.ll.Back()
		c.ll.Remove(oldest)
		delete(c.items, oldest.Value.(*hashEntry).key)
	}
}

func (c *hashCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
