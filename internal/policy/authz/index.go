package authz

import (
	"slices"
)

// group holds the rules of one action, in evaluation order, with an index
// by path so that a request is matched against the few rules that can
// match it rather than all of them.
//
// A rule is indexed when every one of its `to` operations lists paths and
// every path is exact or a prefix: it is then filed under each exact path
// and, for prefixes, under the prefix's length and text. Other rules
// (no `to`, notPaths only, suffix or presence paths) are filed by
// principal when every `from` source lists only exact principals, and are
// otherwise generic: always candidates. Each list holds rule numbers in ascending order, so
// the first match found in a list is that list's earliest rule; first()
// returns the earliest over all lists, the same rule a linear scan would.
type group struct {
	rules     []*rule
	exact     map[string][]int32
	prefix    []prefixLevel // by ascending length
	principal map[string][]int32
	generic   []int32
}

// prefixLevel is every indexed prefix of one length.
type prefixLevel struct {
	n     int
	rules map[string][]int32
}

func newGroup(rules []*rule) *group {
	g := &group{rules: rules, exact: make(map[string][]int32), principal: make(map[string][]int32)}
	byLen := make(map[int]map[string][]int32)
	for i, rl := range rules {
		n := int32(i)
		exact, prefixes, ok := indexKeys(rl)
		if !ok {
			if ps, ok := principalKeys(rl); ok {
				for _, p := range ps {
					g.principal[p] = appendOnce(g.principal[p], n)
				}
			} else {
				g.generic = append(g.generic, n)
			}
			continue
		}
		for _, p := range exact {
			g.exact[p] = appendOnce(g.exact[p], n)
		}
		for _, p := range prefixes {
			m := byLen[len(p)]
			if m == nil {
				m = make(map[string][]int32)
				byLen[len(p)] = m
			}
			m[p] = appendOnce(m[p], n)
		}
	}
	for n, m := range byLen {
		g.prefix = append(g.prefix, prefixLevel{n: n, rules: m})
	}
	slices.SortFunc(g.prefix, func(a, b prefixLevel) int { return a.n - b.n })
	return g
}

func appendOnce(l []int32, n int32) []int32 {
	if len(l) > 0 && l[len(l)-1] == n {
		return l
	}
	return append(l, n)
}

// indexKeys returns the exact paths and prefixes a rule can be filed
// under, or false if it must be generic.
func indexKeys(rl *rule) (exact, prefixes []string, ok bool) {
	if len(rl.to) == 0 {
		return nil, nil, false
	}
	for _, o := range rl.to {
		if len(o.paths) == 0 {
			return nil, nil, false
		}
		for _, m := range o.paths {
			switch m.kind {
			case matchExact:
				exact = append(exact, m.s)
			case matchPrefix:
				prefixes = append(prefixes, m.s)
			default:
				return nil, nil, false
			}
		}
	}
	return exact, prefixes, true
}

// principalKeys returns the exact principals (without "spiffe://") a rule
// can be filed under: every from source must list principals, all exact.
// TCP traffic is matched without the index, so HTTP-only fields need no
// care here.
func principalKeys(rl *rule) ([]string, bool) {
	if len(rl.from) == 0 {
		return nil, false
	}
	var keys []string
	for _, s := range rl.from {
		if len(s.principals) == 0 {
			return nil, false
		}
		for _, m := range s.principals {
			if m.kind != matchExact {
				return nil, false
			}
			keys = append(keys, m.s)
		}
	}
	return keys, true
}

// first returns the earliest rule of the group that matches r, or nil.
// TCP traffic has no path: every rule is a candidate.
func (g *group) first(r *Request) *rule {
	if len(g.rules) == 0 {
		return nil
	}
	if !r.HTTP {
		for _, rl := range g.rules {
			if rl.match(r, nil) {
				return rl
			}
		}
		return nil
	}
	best := int32(len(g.rules)) //nolint:gosec // G115: rule counts are far below 2^31
	best = g.scan(g.generic, r, best)
	best = g.scan(g.exact[r.Path], r, best)
	if len(g.principal) > 0 {
		best = g.scan(g.principal[trimScheme(r.Principal)], r, best)
	}
	for i := range g.prefix {
		lv := &g.prefix[i]
		if lv.n > len(r.Path) {
			break
		}
		best = g.scan(lv.rules[r.Path[:lv.n]], r, best)
	}
	if int(best) == len(g.rules) {
		return nil
	}
	return g.rules[best]
}

// scan returns the first rule of list (ascending) before best that
// matches, or best.
func (g *group) scan(list []int32, r *Request, best int32) int32 {
	for _, n := range list {
		if n >= best {
			break
		}
		if g.rules[n].match(r, nil) {
			return n
		}
	}
	return best
}
