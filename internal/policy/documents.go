package policy

// ObjectDocuments returns, for each object Decode returns from data, the
// number of the document it came from (counting from 1, empty documents
// included), so that a caller can locate an object's fields with a
// Locator. It is only meaningful when Decode succeeded on data.
func ObjectDocuments(data []byte) []int {
	var out []int
	for _, doc := range parseStream(data) {
		if doc.err == nil && doc.root != nil {
			out = append(out, doc.index)
		}
	}
	return out
}
