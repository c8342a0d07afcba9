package authn

// Log attribute keys.
const (
	logComponent = "component"
	logURI       = "uri"
	logError     = "error"
	logReason    = "reason"
	logMessage   = "message"
	logIssuer    = "issuer"
	logKeys      = "keys"
	logSkipped   = "skipped"
	logServing   = "serving_last_good_keys"
)

const componentName = "authn"
