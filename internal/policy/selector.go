package policy

// Selector selects Workloads by their labels, in the namespace of the object
// that holds it (a Service or a PeerAuthentication).
type Selector struct {
	// MatchLabels are the labels a Workload must all have, with these
	// values. An empty map selects nothing and does not validate.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// selects reports whether sel, held by an object in namespace ns, selects
// w: w is in ns and has every label of sel.MatchLabels. A nil or empty
// selector selects nothing.
func (sel *Selector) selects(ns string, w *Workload) bool {
	if sel == nil || len(sel.MatchLabels) == 0 || w == nil || w.Metadata.Namespace != ns {
		return false
	}
	for k, want := range sel.MatchLabels {
		if got, ok := w.Metadata.Labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// checkSelector checks an optional selector at field. omit says what
// leaving the selector out means, for the message about an empty one.
func checkSelector(v *validator, field string, sel *Selector, omit string) {
	if sel == nil {
		return
	}
	if len(sel.MatchLabels) == 0 {
		v.add(field+".matchLabels", "is empty, which selects nothing: name at least one label, or leave out %s %s", field, omit)
		return
	}
	checkLabels(v, field+".matchLabels", sel.MatchLabels)
}
