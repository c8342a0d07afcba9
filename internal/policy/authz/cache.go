package authz

import (
	"context"
	"net/netip"
	"sync"
)

// used is the set of request attributes some rule of an engine reads.
type used uint16

const (
	usePrincipal used = 1 << iota // principals, namespaces, source.principal/namespace
	useSourceIP
	useDestinationIP
	usePort
	useSNI
	useMethod
	useHost
	usePath
	useAuthPrincipal
	useUncacheable // headers, claims, audiences, presenter, CUSTOM
)

// uses computes what the engine's rules read.
func (e *Engine) uses() used {
	var u used
	for _, p := range e.Policies {
		if p.Action == "CUSTOM" {
			u |= useUncacheable // the Rego sees the whole request
		}
		for _, rl := range p.rules {
			for _, s := range rl.from {
				if s.principals != nil || s.notPrincipals != nil || s.namespaces != nil || s.notNamespaces != nil {
					u |= usePrincipal
				}
				if s.reqPrincipals != nil || s.notReqPrincipals != nil {
					u |= useAuthPrincipal
				}
				if s.ipBlocks != nil || s.notIPBlocks != nil || s.remoteIPBlocks != nil || s.notRemoteIPBlocks != nil {
					u |= useSourceIP
				}
			}
			for _, o := range rl.to {
				if o.ports != nil || o.notPorts != nil {
					u |= usePort
				}
				if o.methods != nil || o.notMethods != nil {
					u |= useMethod
				}
				if o.hosts != nil || o.notHosts != nil {
					u |= useHost
				}
				if o.paths != nil || o.notPaths != nil {
					u |= usePath
				}
			}
			for _, c := range rl.when {
				switch c.attr {
				case attrSourceIP, attrRemoteIP:
					u |= useSourceIP
				case attrDestinationIP:
					u |= useDestinationIP
				case attrDestinationPort:
					u |= usePort
				case attrSNI:
					u |= useSNI
				case attrSourceNamespace, attrSourcePrincipal:
					u |= usePrincipal
				case attrAuthPrincipal:
					u |= useAuthPrincipal
				default:
					u |= useUncacheable
				}
			}
		}
	}
	return u
}

// cacheKey holds the attributes an engine's rules read; the others stay
// zero, so requests that differ only in what no rule looks at share an
// entry.
type cacheKey struct {
	principal, authPrincipal, sni, method, host, path string
	sourceIP, destinationIP                           netip.Addr
	port                                              uint32
	http                                              bool
}

// Cache memoizes an engine's decisions, keyed on the attributes its rules
// actually read. It is bounded: a full shard is emptied and refilled.
// Safe for concurrent use.
type Cache struct {
	e      *Engine
	use    used
	shards [16]cacheShard
	limit  int // entries per shard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[cacheKey]Decision
}

// NewCache returns a decision cache of about size entries for e, or nil
// when e's decisions depend on attributes that make caching pointless or
// unsafe (request headers, JWT claims, CUSTOM Rego): then evaluate with
// the engine.
func NewCache(e *Engine, size int) *Cache {
	u := e.uses()
	if size <= 0 || u&useUncacheable != 0 {
		return nil
	}
	c := &Cache{e: e, use: u, limit: max(1, size/len(Cache{}.shards))}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]Decision)
	}
	return c
}

func (c *Cache) key(r *Request) cacheKey {
	k := cacheKey{http: r.HTTP}
	if c.use&usePrincipal != 0 {
		k.principal = r.Principal
	}
	if c.use&useAuthPrincipal != 0 {
		k.authPrincipal = r.Auth.Principal
	}
	if c.use&useSourceIP != 0 {
		k.sourceIP = r.SourceIP
	}
	if c.use&useDestinationIP != 0 {
		k.destinationIP = r.DestinationIP
	}
	if c.use&usePort != 0 {
		k.port = r.Port
	}
	if c.use&useSNI != 0 {
		k.sni = r.SNI
	}
	if c.use&useMethod != 0 {
		k.method = r.Method
	}
	if c.use&useHost != 0 {
		k.host = r.Host
	}
	if c.use&usePath != 0 {
		k.path = r.Path
	}
	return k
}

// shardOf spreads keys over shards by a cheap hash of the path and
// principal (the attributes that vary most).
func shardOf(k *cacheKey) int {
	h := uint32(2166136261)
	for _, s := range [...]string{k.path, k.principal, k.method} {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint32(s[i])) * 16777619
		}
	}
	return int(h % 16)
}

// Evaluate returns the cached decision for r's attributes, evaluating and
// storing it on a miss.
func (c *Cache) Evaluate(ctx context.Context, r *Request) Decision {
	k := c.key(r)
	sh := &c.shards[shardOf(&k)]
	sh.mu.RLock()
	d, ok := sh.m[k]
	sh.mu.RUnlock()
	if ok {
		return d
	}
	d = c.e.Evaluate(ctx, r)
	sh.mu.Lock()
	if len(sh.m) >= c.limit {
		clear(sh.m)
	}
	sh.m[k] = d
	sh.mu.Unlock()
	return d
}
