package protocol

// The support tunnel carries temporary support SSH to an appliance that
// nothing can reach from outside: the agent dials out to PathTunnel with a
// WebSocket upgrade, signs the upgrade like every other request (the
// TunnelRequest in the TunnelHeader), and the portal accepts it with its
// signed Answer in the same header of the 101 response. docs/ssh-tunnel.md
// describes the whole exchange.
const (
	PathTunnel = "/api/v1/tunnel"
	TypeTunnel = "pbx-tunnel+jws" // appliance → portal
	// TunnelHeader carries the signed request on the upgrade and the
	// signed answer on the portal's 101 response.
	TunnelHeader = "Pbx-Tunnel"
	// TunnelSubprotocol is the WebSocket subprotocol both ends insist on.
	TunnelSubprotocol = "pbx-tunnel.v1"
)

// TunnelRequest asks the portal to carry support streams for the ssh.open
// command CommandID, which opened a tunnel and has not ended.
type TunnelRequest struct {
	Request
	PBXID     string `json:"pbx_id"`
	CommandID string `json:"command_id"`
}
