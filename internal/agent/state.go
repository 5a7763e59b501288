package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/atomicfile"
	"tether.dev/tether/internal/backoff"
	"tether.dev/tether/internal/identity"
)

// Where the agent's state lives: files of these names in a state directory,
// or keys of these names in a state Secret.
const (
	StateKeyFile = "agent.key" // the agent's Ed25519 key, PEM
	StateHubFile = "hub.json"  // the hub's EnrollResponse and its TLS pins, JSON (hubFile)
)

// DefaultStateSecretName names the state Secret when the agent runs in a
// cluster without a state directory; it lives in the agent's namespace.
const DefaultStateSecretName = "tether-agent-state"

// storedState is what an enrolled agent keeps between runs.
type storedState struct {
	key ed25519.PrivateKey
	hub EnrollResponse
	// pins are the hub's TLS pins (pin.go); none in a state stored by an
	// agent older than pinning.
	pins []string
}

// hubFile is hub.json: the hub's EnrollResponse, with the pins beside its
// fields. An older hub.json, without tlsPins, loads with none; an older
// agent reading this one ignores them.
type hubFile struct {
	EnrollResponse
	// TLSPins are the SHA-256 of the SubjectPublicKeyInfo, standard
	// base64, of each certificate the hub presented at enrollment (or, for
	// an agent enrolled before pinning, at its first tunnel).
	TLSPins []string `json:"tlsPins,omitempty"`
}

// stateStore keeps the agent's state. Only Run's goroutine uses it.
type stateStore interface {
	// load returns the stored state; ok is false when none is stored (a
	// key without hub.json counts as none: hub.json marks it complete).
	load(ctx context.Context) (st storedState, ok bool, err error)
	// prepare checks, before the one-time join token is spent, that save
	// will be allowed.
	prepare(ctx context.Context) error
	// save stores st. If another agent sharing the store has stored a
	// complete state meanwhile, it stores nothing and returns
	// errStateExists.
	save(ctx context.Context, st storedState) error
	// savePins stores st's pins over a complete state, atomically: the
	// pins an agent enrolled before pinning learned at its first tunnel.
	// It stores nothing if the stored key is another's (errStateExists),
	// or if the stored state has pins already (another replica's).
	savePins(ctx context.Context, st storedState) error
	// peerWait is how long another agent sharing the store may take to
	// store an enrollment that spent the join token before ours; zero when
	// nothing shares it.
	peerWait() time.Duration
	// String says where the state is, for messages.
	String() string
}

// errStateExists means another agent stored its state first.
var errStateExists = errors.New("another agent stored its enrollment first")

// parseState decodes the stored key and hub.json; where names the store.
func parseState(keyPEM, hubJSON []byte, where fmt.Stringer) (storedState, error) {
	key, err := agentkey.UnmarshalPrivateKey(keyPEM)
	if err != nil {
		return storedState{}, fmt.Errorf("%w: agent key in %s: %v; delete it and enroll again with a new join token", ErrRefused, where, err)
	}
	var hub hubFile
	err = json.Unmarshal(hubJSON, &hub)
	if err == nil {
		err = checkPins(hub.TLSPins)
	}
	if err != nil {
		return storedState{}, fmt.Errorf("%w: %s in %s: %v; delete it and enroll again with a new join token", ErrRefused, StateHubFile, where, err)
	}
	return storedState{key: key, hub: hub.EnrollResponse, pins: hub.TLSPins}, nil
}

func (st storedState) encode() (keyPEM, hubJSON []byte) {
	hubJSON, _ = json.Marshal(hubFile{EnrollResponse: st.hub, TLSPins: st.pins}) // plain strings: cannot fail
	return agentkey.MarshalPrivateKey(st.key), hubJSON
}

// dirState keeps the state in a directory (0700, files 0600).
type dirState struct{ dir string }

func (d dirState) String() string { return "state directory " + d.dir }

func (d dirState) load(context.Context) (storedState, bool, error) {
	keyPEM, kerr := os.ReadFile(filepath.Join(d.dir, StateKeyFile))
	hubJSON, herr := os.ReadFile(filepath.Join(d.dir, StateHubFile))
	switch {
	case errors.Is(kerr, os.ErrNotExist) || errors.Is(herr, os.ErrNotExist):
		return storedState{}, false, nil
	case kerr != nil || herr != nil:
		return storedState{}, false, fmt.Errorf("read %s: %w", d, errors.Join(kerr, herr))
	}
	st, err := parseState(keyPEM, hubJSON, d)
	return st, err == nil, err
}

func (d dirState) prepare(context.Context) error {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return nil
}

func (d dirState) save(_ context.Context, st storedState) error {
	keyPEM, hubJSON := st.encode()
	// Key first: hub.json marks the state complete.
	if err := atomicfile.Write(filepath.Join(d.dir, StateKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(d.dir, StateHubFile), hubJSON, 0o600)
}

// savePins rewrites hub.json; nothing else writes the directory meanwhile.
func (d dirState) savePins(_ context.Context, st storedState) error {
	_, hubJSON := st.encode()
	return atomicfile.Write(filepath.Join(d.dir, StateHubFile), hubJSON, 0o600)
}

func (dirState) peerWait() time.Duration { return 0 }

// secretState keeps the state in a Secret, which the replicas of one agent
// Deployment share. Writes carry the resourceVersion they read, so a
// complete state is never overwritten: of two racing agents, one stores its
// enrollment and the other reads it.
type secretState struct {
	secrets corev1client.SecretsGetter
	ref     types.NamespacedName
}

// secretPeerWait is how long an agent whose join token was refused waits
// for a replica that spent it to store its enrollment: one enrollment and
// one Secret write, with room for a slow API server.
const secretPeerWait = 30 * time.Second

func (s secretState) String() string { return "Secret " + s.ref.String() }

func (s secretState) load(ctx context.Context) (storedState, bool, error) {
	sec, err := s.get(ctx)
	if err != nil || !complete(sec) {
		return storedState{}, false, err
	}
	st, err := parseState(sec.Data[StateKeyFile], sec.Data[StateHubFile], s)
	return st, err == nil, err
}

// get returns the Secret, or nil if there is none.
func (s secretState) get(ctx context.Context) (*corev1.Secret, error) {
	sec, err := s.secrets.Secrets(s.ref.Namespace).Get(ctx, s.ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, s.wrap("read", err)
	}
	return sec, nil
}

func complete(sec *corev1.Secret) bool {
	return sec != nil && len(sec.Data[StateKeyFile]) > 0 && len(sec.Data[StateHubFile]) > 0
}

// wrap names the Secret in err and, when RBAC refused, what to grant. A
// nil err stays nil.
func (s secretState) wrap(verb string, err error) error {
	if err == nil {
		return nil
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s %s: %w; the agent's service account needs get and update on this Secret (resourceNames: [%s]) and create on secrets in namespace %s",
			verb, s, err, s.ref.Name, s.ref.Namespace)
	}
	return fmt.Errorf("%s %s: %w", verb, s, err)
}

// prepare makes a dry-run write of what save will write.
func (s secretState) prepare(ctx context.Context) error {
	_, err := s.write(ctx, storedState{}, []string{metav1.DryRunAll})
	return err
}

func (s secretState) save(ctx context.Context, st storedState) error {
	for {
		written, err := s.write(ctx, st, nil)
		if written || err != nil {
			return err
		}
		// A conflict: someone wrote the Secret since we read it. Read again.
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// write creates the Secret with st, or updates an incomplete one at the
// resourceVersion it read. It reports false, nil after a conflict (read
// again and retry) and errStateExists if the Secret is already complete.
// An empty st writes empty values (a dry run needs nothing more).
func (s secretState) write(ctx context.Context, st storedState, dryRun []string) (bool, error) {
	cur, err := s.get(ctx)
	if err != nil {
		return false, err
	}
	if complete(cur) {
		return false, errStateExists
	}
	var keyPEM, hubJSON []byte
	if st.key != nil {
		keyPEM, hubJSON = st.encode()
	}
	secrets := s.secrets.Secrets(s.ref.Namespace)
	if cur == nil {
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: s.ref.Name, Namespace: s.ref.Namespace, Labels: map[string]string{
				"app.kubernetes.io/name":      "tether-agent",
				"app.kubernetes.io/component": "state",
			}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{StateKeyFile: keyPEM, StateHubFile: hubJSON},
		}, metav1.CreateOptions{DryRun: dryRun, FieldManager: "tether-agent"})
		if apierrors.IsAlreadyExists(err) {
			return false, nil
		}
		return err == nil, s.wrap("create", err)
	}
	// An existing Secret without our state (made empty by the installer):
	// add ours, keep everything else.
	next := cur.DeepCopy()
	if next.Data == nil {
		next.Data = map[string][]byte{}
	}
	next.Data[StateKeyFile], next.Data[StateHubFile] = keyPEM, hubJSON
	_, err = secrets.Update(ctx, next, metav1.UpdateOptions{DryRun: dryRun, FieldManager: "tether-agent"})
	if apierrors.IsConflict(err) {
		return false, nil
	}
	return err == nil, s.wrap("update", err)
}

// savePins updates hub.json in the Secret at the resourceVersion it read,
// reading again after a conflict.
func (s secretState) savePins(ctx context.Context, st storedState) error {
	for {
		cur, err := s.get(ctx)
		if err != nil {
			return err
		}
		if !complete(cur) {
			return fmt.Errorf("%s holds no complete state any more", s)
		}
		stored, err := parseState(cur.Data[StateKeyFile], cur.Data[StateHubFile], s)
		switch {
		case err != nil:
			return err
		case !stored.key.Equal(st.key):
			return errStateExists
		case len(stored.pins) > 0:
			return nil // another replica recorded them first
		}
		_, hubJSON := st.encode()
		next := cur.DeepCopy()
		next.Data[StateHubFile] = hubJSON
		_, err = s.secrets.Secrets(s.ref.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: "tether-agent"})
		if !apierrors.IsConflict(err) {
			return s.wrap("update", err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (secretState) peerWait() time.Duration { return secretPeerWait }

// enrollment is an enrolled agent's identity, ready to use. Its fields do
// not change; pins guards its own.
type enrollment struct {
	key      ed25519.PrivateKey
	cluster  string
	verifier *identity.AssertionVerifier
	// base is where the tunnel and status reports go: the hub's TunnelURL,
	// or the URL the agent enrolled at.
	base *url.URL
	// stored is the state this enrollment was read from or stored as; the
	// pins learned on first use are stored with it.
	stored storedState
	pins   *hubPins
	// hubClient is Config.HubClient, the model of the clients below.
	hubClient *http.Client
	// client carries the status reports (and any request to the hub but
	// the tunnel), pinned; transport is its own, nil when hubClient's
	// transport cannot be pinned (client is hubClient then).
	client    *http.Client
	transport *http.Transport
}

// tunnelClient returns the client of one tunnel dial, pinned, with
// connections of its own so that chain returns the certificates the hub
// presented to this dial (nil if unknown); release closes its idle
// connections once the dial is over.
func (en *enrollment) tunnelClient() (client *http.Client, chain func() []*x509.Certificate, release func()) {
	var mu sync.Mutex // guards peer
	var peer []*x509.Certificate
	client, t := pinnedClient(en.hubClient, en.pins, func(cs tls.ConnectionState) {
		mu.Lock()
		defer mu.Unlock()
		peer = cs.PeerCertificates
	})
	if client == nil {
		return en.hubClient, func() []*x509.Certificate { return nil }, func() {}
	}
	return client, func() []*x509.Certificate {
		mu.Lock()
		defer mu.Unlock()
		return peer
	}, t.CloseIdleConnections
}

// closeIdle closes the idle connections of the status reports' client.
func (en *enrollment) closeIdle() {
	if en.transport != nil {
		en.transport.CloseIdleConnections()
	}
}

// endpoint returns base with path appended and the given scheme.
func (en *enrollment) endpoint(scheme, path string) string {
	u := *en.base
	u.Scheme = scheme
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}

// proof is the Authorization header value for a request to base.
func (en *enrollment) proof() (string, error) {
	return agentkey.Sign(en.key, en.cluster, en.base.Host, time.Now())
}

// enrollment returns the stored enrollment, enrolling first if the store
// has none. Once the hub has accepted the join token it keeps trying to
// store the result until it succeeds or ctx ends: the token cannot be
// spent twice.
func (a *Agent) enrollment(ctx context.Context) (*enrollment, error) {
	st, ok, err := a.state.load(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		if a.cfg.JoinToken != "" {
			a.logger.Info("already enrolled; ignoring the join token", "cluster", st.hub.Cluster, "state", a.state.String())
		}
		return a.newEnrollment(st)
	}
	if a.cfg.JoinToken == "" {
		return nil, fmt.Errorf("%w: the agent is not enrolled (nothing in %s) and has no join token; register the cluster on the hub and pass its join token", ErrRefused, a.state)
	}
	if err := a.state.prepare(ctx); err != nil {
		return nil, err
	}
	key, err := agentkey.Generate()
	if err != nil {
		return nil, err
	}
	resp, pins, err := a.enroll(ctx, key.Public().(ed25519.PublicKey))
	var he *hubError
	if errors.As(err, &he) && he.code == http.StatusGone && a.state.peerWait() > 0 {
		// Spent: perhaps by a replica sharing this state, about to store it.
		if st, ok := a.awaitPeer(ctx); ok {
			return a.newEnrollment(st)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(pins) == 0 {
		a.logger.Warn("the hub's TLS certificates are unknown (its client's transport does not say): they will be pinned at the first tunnel", "cluster", resp.Cluster)
	}
	st = storedState{key: key, hub: resp, pins: pins}
	en, err := a.newEnrollment(st)
	if err != nil {
		return nil, err
	}
	lost := func(err error) error {
		a.logger.Error("stopped before the enrollment was stored: the join token is spent; issue a new one", "cluster", resp.Cluster, "err", err)
		return ctx.Err()
	}
	bo := backoff.New(a.cfg.MinBackoff, a.cfg.MaxBackoff)
	for {
		err := a.state.save(ctx, st)
		switch {
		case err == nil:
			a.logger.Info("agent enrolled", "cluster", resp.Cluster, "state", a.state.String(), "pins", strings.Join(pins, ","))
			return en, nil
		case errors.Is(err, errStateExists):
			// Only possible with two join tokens: the hub kept the key it
			// was given last, which we cannot know; use what the replicas share.
			a.logger.Warn("another agent stored its enrollment first; using it", "cluster", resp.Cluster, "state", a.state.String())
			stored, ok, err := a.state.load(ctx)
			if err == nil && !ok {
				err = errors.New("it is gone again")
			}
			if err != nil {
				return nil, fmt.Errorf("read the enrollment another agent stored: %w", err)
			}
			return a.newEnrollment(stored)
		case ctx.Err() != nil:
			return nil, lost(err)
		}
		wait := bo.Next()
		a.logger.Error("store the enrollment; retrying (the join token is spent: keep the agent running until this succeeds)",
			"err", err, "retry_in", wait.Round(time.Millisecond).String())
		if !sleep(ctx, wait) {
			return nil, lost(err)
		}
	}
}

// awaitPeer polls the store for an enrollment another agent stored after
// spending the join token first.
func (a *Agent) awaitPeer(ctx context.Context) (storedState, bool) {
	a.logger.Info("join token refused; waiting for another replica's enrollment", "state", a.state.String())
	ctx, cancel := context.WithTimeout(ctx, a.state.peerWait())
	defer cancel()
	for {
		st, ok, err := a.state.load(ctx)
		if err == nil && ok {
			a.logger.Info("using the enrollment another replica stored", "cluster", st.hub.Cluster)
			return st, true
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return storedState{}, false
		}
	}
}

func (a *Agent) newEnrollment(st storedState) (*enrollment, error) {
	var keys []ed25519.PublicKey
	for _, k := range st.hub.HubKeys {
		pub, err := identity.ParsePublicKeyPEM([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("%w: the hub sent an unusable assertion key: %v", ErrRefused, err)
		}
		keys = append(keys, pub)
	}
	v, err := identity.NewAssertionVerifier(st.hub.HubID, keys...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	en := &enrollment{key: st.key, cluster: st.hub.Cluster, verifier: v, base: a.cfg.Hub, stored: st, hubClient: a.cfg.HubClient}
	if st.hub.TunnelURL != "" {
		u, err := url.Parse(st.hub.TunnelURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			a.logger.Warn("the hub's tunnel URL is not https://HOST[:PORT]; using the enrollment URL", "tunnel_url", st.hub.TunnelURL, "hub", a.cfg.Hub.Host)
		} else {
			en.base = u
		}
	}
	// The pins hold for every host of the hub: it serves one certificate.
	hosts := []string{a.cfg.Hub.Hostname(), en.base.Hostname()}
	if t, ok := a.cfg.HubClient.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		hosts = append(hosts, t.TLSClientConfig.ServerName)
	}
	en.pins = newHubPins(st.pins, hosts...)
	en.client, en.transport = pinnedClient(a.cfg.HubClient, en.pins, nil)
	if en.client == nil {
		en.client = a.cfg.HubClient
	}
	return en, nil
}

// learnPins is trust on first use, for a state stored before pinning: it
// pins chain, the certificates the hub presented to the tunnel that just
// connected, and stores them. A failed write is logged and tried again at
// the next tunnel; the pins apply meanwhile.
func (a *Agent) learnPins(ctx context.Context, en *enrollment, chain []*x509.Certificate) {
	if en.pins.learn(chainPins(chain)) {
		pins, _ := en.pins.get()
		a.logger.Info("the state has no TLS pins of the hub (enrolled by an older agent): pinned the keys it presents now",
			"cluster", en.cluster, "hub", en.base.Host, "pins", strings.Join(pins, ","))
	}
	pins, saved := en.pins.get()
	if saved || len(pins) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := en.stored
	st.pins = pins
	if err := a.state.savePins(ctx, st); err != nil {
		a.logger.Error("store the hub's TLS pins; trying again at the next tunnel", "cluster", en.cluster, "state", a.state.String(), "err", err)
		return
	}
	en.pins.markSaved()
	a.logger.Info("stored the hub's TLS pins", "cluster", en.cluster, "state", a.state.String())
}
