package agent

// StatusPath is where an agent reports its status to the hub (POST, JSON
// StatusReport), authenticated with its key exactly as the tunnel upgrade
// is.
const StatusPath = "/api/v1/agent/status"

// StatusReport is what an agent tells the hub about its cluster, at start,
// periodically and whenever it changes; `tether cluster show` reports it.
type StatusReport struct {
	AgentVersion      string `json:"agentVersion"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// NodeCount is the number of Node objects; -1 when unknown (the API
	// server could not be asked).
	NodeCount int `json:"nodeCount"`
	// LastError is the agent's most recent problem (API server unreachable,
	// permissions missing), empty when all is well. At most 1 KiB.
	LastError string `json:"lastError,omitempty"`
}
