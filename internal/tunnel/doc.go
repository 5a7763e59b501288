// Package tunnel is Tether's transport: one WebSocket connection that the
// agent dials out to the hub, multiplexed into many streams by yamux, each
// stream a net.Conn that carries one HTTP/1.1 connection from the hub to the
// agent.
//
//	 cluster (no inbound port)                         hub (public, TLS 443)
//	+----------------------------+                    +------------------------------+
//	| agent                      |  1. dial out:      | agent endpoint               |
//	|   Dial(wss://hub/...)      | ---- TLS, GET ---->|   (authenticates, then)      |
//	|   WebSocket client         |  Upgrade:websocket |   Accept(w, r)               |
//	|   yamux server: Accept     | <--- 101 ----------|   WebSocket server           |
//	|                            |  tether.tunnel.v1  |   yamux client: Open         |
//	|   http.Server.Serve(sess)  |                    |                              |
//	|     <--- stream 1 ---------|<== 2. streams ====|   http.Transport dials       |
//	|     <--- stream 3 ---------|   opened by hub    |   sess.Open per connection   |
//	+----------------------------+                    +------------------------------+
//	      (HTTPS_PROXY, if any, sits on arrow 1 as an HTTP CONNECT tunnel)
//
// The package knows no routes, users or clusters: the caller authenticates
// the upgrade request before Accept, and builds HTTP on top of Open and
// Accept. The wire protocol is written down in docs/protocol.md.
//
// Flow control is per stream (a slow reader stalls only its own stream),
// keepalive pings find a dead peer within KeepAliveInterval +
// KeepAliveTimeout, the hub drains a session with GoAway, and streams have no
// total deadline.
package tunnel
