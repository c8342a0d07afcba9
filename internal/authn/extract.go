package authn

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// found is one token in a request, and where it is so it can be removed.
type found struct {
	loc   *location
	value string
	// key is the header's key in the request's map, as found (server
	// requests have canonical keys; a hand-built one may not).
	key string
	// For a header: the index among the values under key. For a query
	// parameter: the index of the piece in the raw query.
	index int
}

// extract finds every token in r at the given locations. A header value
// belongs to the location of its header whose prefix it starts with
// (case-insensitively), the longest such prefix if several rules read the
// header with different ones; values matching no prefix are not tokens.
// The token is what follows the prefix, without surrounding spaces and
// tabs; an empty one is still a token (a malformed one).
//
// Query parameters are read from r.URL.RawQuery, split on both '&' and
// ';': an app that splits on ';' must not receive a token we did not see.
// A piece whose name does not decode is not a token; one whose name is a
// token parameter but whose value does not decode is (a malformed one).
func extract(r *http.Request, locs []*location) ([]found, *Error) {
	var out []found
	done := map[string]bool{}
	params := map[string]*location{}
	for _, l := range locs {
		if l.header == "" {
			params[l.param] = l
			continue
		}
		if done[l.header] {
			continue
		}
		done[l.header] = true
		for _, key := range headerKeys(r.Header, l.header) {
			for i, v := range r.Header[key] {
				var best *location
				for _, m := range locs {
					if m.header == l.header && hasPrefixFold(v, m.prefix) && (best == nil || len(m.prefix) > len(best.prefix)) {
						best = m
					}
				}
				if best != nil {
					out = append(out, found{loc: best, value: strings.Trim(v[len(best.prefix):], " \t"), key: key, index: i})
				}
			}
		}
	}
	if len(params) > 0 && r.URL != nil && r.URL.RawQuery != "" {
		for i, piece := range splitQuery(r.URL.RawQuery) {
			rawKey, rawValue, _ := strings.Cut(piece, "=")
			key, err := url.QueryUnescape(rawKey)
			if err != nil {
				continue
			}
			l, ok := params[key]
			if !ok {
				continue
			}
			value, err := url.QueryUnescape(rawValue)
			if err != nil {
				return nil, failure(ReasonMalformed, "token query parameter is not url-encoded correctly", nil)
			}
			out = append(out, found{loc: l, value: strings.Trim(value, " \t"), index: i})
		}
	}
	return out, nil
}

// headerKeys returns the keys of h that name the header name (canonical):
// the canonical key and any other spelling of it, sorted.
func headerKeys(h http.Header, name string) []string {
	var keys []string
	for k := range h {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// delHeader removes every spelling of the header name from h.
func delHeader(h http.Header, name string) {
	for _, k := range headerKeys(h, name) {
		delete(h, k)
	}
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// splitQuery splits a raw query on '&' and ';', keeping the pieces raw.
func splitQuery(q string) []string {
	return strings.FieldsFunc(q, func(c rune) bool { return c == '&' || c == ';' })
}

// remove deletes the token f from r. A header value is removed from its
// header (the header goes when no value is left). A query parameter is
// removed from r.URL.RawQuery, keeping the other pieces and their
// separators byte for byte, and r.RequestURI, when set (server requests),
// gets the same query so the two agree; r.URL.ForceQuery is cleared when
// the query becomes empty. r.Form is not touched: authenticate before
// anything parses the form.
func remove(r *http.Request, f found) {
	if f.loc.header != "" {
		vals := r.Header[f.key]
		kept := make([]string, 0, len(vals))
		for i, v := range vals {
			if i != f.index {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(r.Header, f.key)
		} else {
			r.Header[f.key] = kept
		}
		return
	}
	q := removeQueryPiece(r.URL.RawQuery, f.index)
	r.URL.RawQuery = q
	if q == "" {
		r.URL.ForceQuery = false
	}
	if r.RequestURI != "" {
		if at := strings.IndexByte(r.RequestURI, '?'); at >= 0 {
			if q == "" {
				r.RequestURI = r.RequestURI[:at]
			} else {
				r.RequestURI = r.RequestURI[:at+1] + q
			}
		}
	}
}

// removeQueryPiece removes the piece with index n, as splitQuery numbers
// them (empty pieces have none), with one adjacent separator.
func removeQueryPiece(q string, n int) string {
	// Walk the query, tracking piece boundaries exactly as splitQuery
	// does (FieldsFunc drops empty fields, so only non-empty pieces get
	// an index).
	idx := -1
	start := 0
	for i := 0; i <= len(q); i++ {
		if i < len(q) && q[i] != '&' && q[i] != ';' {
			continue
		}
		if i > start {
			idx++
			if idx == n {
				// Drop the piece and the separator after it, or, for the
				// last piece, the one before it.
				switch {
				case i < len(q):
					return q[:start] + q[i+1:]
				case start > 0:
					return q[:start-1]
				default:
					return ""
				}
			}
		}
		start = i + 1
	}
	return q
}
