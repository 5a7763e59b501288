package agent

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// The hub's TLS identity, pinned at enrollment (docs/agent.md, "The hub's
// TLS keys").
//
// At enrollment the agent records the SHA-256 of the SubjectPublicKeyInfo
// of every certificate the hub presented: its leaf, intermediates, and the
// root if it sent one. Every later TLS connection to the hub (the tunnel,
// status reports, whatever host of the hub it dials) must, besides
// verifying as usual, show one of those keys in a chain that verified. A
// server with a certificate for the hub's name that the agent's roots would
// otherwise accept (a publicly valid one, or one from another CA in the
// pool) is refused during the handshake, before the agent sends its proof.
// The hub may renew its leaf under the same CA, or keep its key, and stays
// accepted. A refused pin is retried like any failed dial: a passing
// misrouting must not stop the agent for good.
//
// A state stored before pinning has none: the agent then trusts on first
// use, pinning the chain of its first tunnel the hub accepts and storing
// it (Agent.learnPins). Through an HTTPS proxy, the proxy's own handshake
// (a certificate valid for no hub host) is only verified as usual.
//
// The check is a tls.Config.VerifyConnection on clones of the hub client's
// *http.Transport; another kind of RoundTripper gives no access to the TLS
// handshake before the request is sent, so an agent given one runs without
// pinning (New logs a warning).

// spkiPin is the pin of one certificate: the SHA-256 of its
// SubjectPublicKeyInfo, standard base64 (the pin-sha256 of HPKP, what
// `openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst
// -sha256 -binary | base64` prints).
func spkiPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// chainPins are the pins of certs, in order, without repeats.
func chainPins(certs []*x509.Certificate) []string {
	var pins []string
	for _, c := range certs {
		if p := spkiPin(c); !slices.Contains(pins, p) {
			pins = append(pins, p)
		}
	}
	return pins
}

// checkPins validates stored pins: base64 of 32 bytes each.
func checkPins(pins []string) error {
	for _, p := range pins {
		if b, err := base64.StdEncoding.DecodeString(p); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("pin %q is not the standard base64 of a SHA-256", p)
		}
	}
	return nil
}

// pinError is a hub connection refused because no certificate of the
// verified chain has a pinned key.
type pinError struct {
	host      string
	pinned    []string
	presented []string // the pins of every certificate the server sent
}

func (e *pinError) Error() string {
	return fmt.Sprintf("the hub at %s presented a certificate whose keys differ from those it had at enrollment "+
		"(pinned SubjectPublicKeyInfo SHA-256: %s; presented: %s): a man in the middle, or the hub's certificate and CA were replaced; "+
		"if the hub's CA really changed, re-enroll the agent with a new join token and an empty state",
		e.host, strings.Join(e.pinned, ", "), strings.Join(e.presented, ", "))
}

// isPinError reports whether err is, or wraps, a refused pin.
func isPinError(err error) bool {
	var pe *pinError
	return errors.As(err, &pe)
}

// hubPins are the pins an enrolled agent checks the hub's connections
// against. Empty pins (state stored by an agent older than pinning) let
// every connection through until the first tunnel records its chain (trust
// on first use).
type hubPins struct {
	// hosts are the hub's host names or IPs (enrollment URL, tunnel URL, a
	// TLS ServerName set in the client's config): a connection whose leaf
	// is valid for none of them is not to the hub but to an HTTPS proxy on
	// the way, which is checked only as usual.
	hosts []string

	mu   sync.Mutex // guards pins and saved
	pins []string
	// saved: pins are in the stored state (false after trust on first use
	// until the state is written).
	saved bool
}

func newHubPins(pins []string, hosts ...string) *hubPins {
	p := &hubPins{pins: slices.Clone(pins), saved: len(pins) > 0}
	for _, h := range hosts {
		if h != "" && !slices.Contains(p.hosts, h) {
			p.hosts = append(p.hosts, h)
		}
	}
	return p
}

func (p *hubPins) get() (pins []string, saved bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins, p.saved
}

// learn sets pins if there were none, and reports whether it did.
func (p *hubPins) learn(pins []string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pins) > 0 || len(pins) == 0 {
		return false
	}
	p.pins = pins
	return true
}

func (p *hubPins) markSaved() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.saved = true
}

// hubHost returns the hub host leaf is valid for, if any.
func (p *hubPins) hubHost(leaf *x509.Certificate) (string, bool) {
	for _, h := range p.hosts {
		if leaf.VerifyHostname(h) == nil {
			return h, true
		}
	}
	return "", false
}

// verify is the pin check of one handshake, run after the usual
// verification. toHub is false for a connection that is not to the hub
// (an HTTPS proxy's own TLS).
func (p *hubPins) verify(cs tls.ConnectionState) (toHub bool, err error) {
	pins, _ := p.get()
	if len(cs.PeerCertificates) == 0 {
		if len(pins) == 0 {
			return false, nil
		}
		return false, errors.New("the server presented no certificate to check against the hub's pinned keys")
	}
	leaf := cs.PeerCertificates[0]
	host, toHub := p.hubHost(leaf)
	// Without chain verification (InsecureSkipVerify in the client's
	// config) only the leaf's key was proved, and the name proves nothing:
	// every connection is taken to be to the hub.
	certs := []*x509.Certificate{leaf}
	switch {
	case len(cs.VerifiedChains) == 0:
		toHub = true
	case !toHub:
		return false, nil
	default:
		// Only certificates of a verified chain count: a server may append
		// anyone's certificate, the real hub's included, to what it sends.
		certs = nil
		for _, chain := range cs.VerifiedChains {
			certs = append(certs, chain...)
		}
	}
	if len(pins) == 0 {
		return true, nil // trust on first use: the first tunnel records them
	}
	for _, c := range certs {
		if slices.Contains(pins, spkiPin(c)) {
			return true, nil
		}
	}
	if host == "" {
		host = cs.ServerName
	}
	if host == "" {
		host = strings.Join(p.hosts, " or ")
	}
	return true, &pinError{host: host, pinned: pins, presented: chainPins(cs.PeerCertificates)}
}

// pinnedClient returns a copy of client whose transport, a clone of its
// *http.Transport with connections of its own, checks every handshake
// against pins. seen, when not nil, is told each hub connection's state
// once it passed. It returns nil if client's transport is not an
// *http.Transport (nil counts as http.DefaultTransport).
func pinnedClient(client *http.Client, pins *hubPins, seen func(tls.ConnectionState)) (*http.Client, *http.Transport) {
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	base, ok := rt.(*http.Transport)
	if !ok {
		return nil, nil
	}
	t := base.Clone()
	cfg := t.TLSClientConfig // a clone already
	if cfg == nil {
		cfg = &tls.Config{}
	}
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		toHub, err := pins.verify(cs)
		if err != nil {
			return err
		}
		if toHub && seen != nil {
			seen(cs)
		}
		return nil
	}
	t.TLSClientConfig = cfg
	c := *client
	c.Transport = t
	return &c, t
}

// pinnable reports whether pinnedClient can pin client.
func pinnable(client *http.Client) bool {
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	_, ok := rt.(*http.Transport)
	return ok
}
