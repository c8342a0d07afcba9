package proxy

// Log attribute keys.
const (
	logComponent = "component"
	logDirection = "direction"
	logReason    = "reason"
	logError     = "error"
	logGroup     = "group"
	logResumed   = "resumed"
	logRemote    = "remote"
	logPeer      = "peer"
	logListener  = "listener"
	logService   = "service"
	logVersion   = "version"
	logPort      = "port"
	logMode      = "mode"
)
