package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/agentkey"
)

// stateRBAC is what the agent needs beyond deploy/agent-rbac.yaml, as
// docs/agent.md gives it: its state Secret, and counting nodes.
const stateRBAC = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: tether-agent-state, namespace: tether-system}
rules:
  - apiGroups: [""]
    resources: [secrets]
    resourceNames: [tether-agent-state]
    verbs: [get, update]
  - apiGroups: [""]
    resources: [secrets]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tether-agent-state, namespace: tether-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: tether-agent-state}
subjects:
  - {kind: ServiceAccount, name: tether-agent, namespace: tether-system}
  - {kind: ServiceAccount, name: bare, namespace: tether-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tether-agent-nodes}
rules:
  - apiGroups: [""]
    resources: [nodes]
    verbs: [list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tether-agent-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tether-agent-nodes}
subjects:
  - {kind: ServiceAccount, name: tether-agent, namespace: tether-system}
`

// TestAgentInCluster runs agents against the real API server: state in a
// Secret, status reports, and permission problems. The agents run as
// service accounts holding deploy/agent-rbac.yaml and stateRBAC, or less.
func TestAgentInCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startRBACCluster(t, ctx)
	c.kubectl(t, ctx, "", "create", "serviceaccount", "bare", "-n", "tether-system")
	c.kubectl(t, ctx, stateRBAC, "apply", "-f", "-")
	bare := c.serviceAccountConfig(t, ctx, "bare") // the state Secret, nothing else
	ref := types.NamespacedName{Namespace: "tether-system", Name: DefaultStateSecretName}
	secrets := c.admin.CoreV1().Secrets(ref.Namespace)
	hub := newTestHub(t, "tjt_first", "tjt_again", "tjt_race")
	config := func(api *rest.Config, token string) Config {
		return Config{Hub: hub.url(), HubClient: hub.srv.Client(), JoinToken: token, StateSecret: ref, APIServer: api, Version: "test-version",
			CheckInterval: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	}
	// connected runs agents until each has a live tunnel, then stops them.
	connected := func(t *testing.T, logger *slog.Logger, cfgs ...Config) {
		t.Helper()
		before := len(hub.liveSessions())
		var stops []func() error
		for _, cfg := range cfgs {
			_, stop := runAgent(t, cfg, logger)
			stops = append(stops, stop)
		}
		hub.waitFor("tunnels", func() bool {
			live := 0
			for _, s := range hub.sessions {
				if s.Err() == nil {
					live++
				}
			}
			return live == before+len(cfgs)
		})
		for _, stop := range stops {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// storedKey is the public key in the state Secret.
	storedKey := func(t *testing.T) ed25519.PublicKey {
		t.Helper()
		sec, err := secrets.Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		key, err := agentkey.UnmarshalPrivateKey(sec.Data[StateKeyFile])
		if err != nil {
			t.Fatal(err)
		}
		var hubJSON EnrollResponse
		if err := json.Unmarshal(sec.Data[StateHubFile], &hubJSON); err != nil || hubJSON.Cluster != testCluster {
			t.Errorf("stored hub.json %s: %v", sec.Data[StateHubFile], err)
		}
		return key.Public().(ed25519.PublicKey)
	}
	hubKey := func() ed25519.PublicKey {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.key
	}

	t.Run("enrollment creates the state Secret; a restart uses it and ignores a new join token", func(t *testing.T) {
		connected(t, nil, config(c.agent, "tjt_first"))
		if got := storedKey(t); !got.Equal(hubKey()) {
			t.Errorf("the Secret's key is not the one the hub enrolled")
		}
		var logs syncBuffer
		connected(t, slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil)), config(c.agent, "tjt_again"))
		hub.mu.Lock()
		enrolled, spent := hub.enrolled, hub.tokens["tjt_again"]
		hub.mu.Unlock()
		if enrolled != 1 || spent {
			t.Errorf("restart: %d enrollments, second token spent: %t; want 1 and false", enrolled, spent)
		}
		if !strings.Contains(logs.String(), "already enrolled; ignoring the join token") {
			t.Errorf("no log line about the ignored join token:\n%s", logs.String())
		}
	})

	t.Run("two replicas race one join token: one enrolls, both use its key", func(t *testing.T) {
		if err := secrets.Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		connected(t, nil, config(c.agent, "tjt_race"), config(c.agent, "tjt_race"))
		hub.mu.Lock()
		enrolled := hub.enrolled
		hub.mu.Unlock()
		if enrolled != 2 {
			t.Errorf("%d enrollments in all, want 2 (one per join token)", enrolled)
		}
		// Both tunnels' proofs verified with the hub's one key (testHub.verify).
		if got := storedKey(t); !got.Equal(hubKey()) {
			t.Errorf("the Secret's key is not the one the hub enrolled")
		}
	})

	t.Run("a state stored before TLS pinning gets the hub's pins at the first tunnel", func(t *testing.T) {
		want := []string{pinOf(t, hub.srv.Certificate().PublicKey)}
		secretPins := func() ([]string, EnrollResponse, string) {
			sec, err := secrets.Get(ctx, ref.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var f hubFile
			if err := json.Unmarshal(sec.Data[StateHubFile], &f); err != nil {
				t.Fatal(err)
			}
			return f.TLSPins, f.EnrollResponse, sec.ResourceVersion
		}
		pins, enrolled, _ := secretPins()
		if diff := cmp.Diff(want, pins); diff != "" {
			t.Errorf("pins stored at enrollment (-want +got):\n%s", diff)
		}
		// hub.json as an agent before pinning wrote it.
		old, _ := json.Marshal(enrolled)
		if err := patchSecret(ctx, secrets, ref.Name, fmt.Sprintf(`{"data":{%q:%q}}`, StateHubFile, base64.StdEncoding.EncodeToString(old))); err != nil {
			t.Fatal(err)
		}
		if pins, _, _ := secretPins(); pins != nil {
			t.Fatalf("pins left after the rewrite: %q", pins)
		}
		_, stop := runAgent(t, config(c.agent, ""), nil)
		eventually(t, "pins in the Secret", func() (bool, string) {
			pins, _, rv := secretPins()
			return cmp.Equal(want, pins), fmt.Sprintf("pins %q at resourceVersion %s", pins, rv)
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if _, got, _ := secretPins(); !cmp.Equal(enrolled, got) {
			t.Errorf("enrollment after storing the pins: %+v, want %+v", got, enrolled)
		}
	})

	t.Run("status reports: versions and nodes; the API server's loss and return reported at once", func(t *testing.T) {
		v, err := c.admin.Discovery().ServerVersion()
		if err != nil {
			t.Fatal(err)
		}
		cut := newCutter(t, strings.TrimPrefix(c.Server, "https://"))
		api := rest.CopyConfig(c.agent)
		api.Host = "https://" + cut.addr()
		cfg := config(api, "")
		cfg.StatusInterval = time.Hour // only connect and changes send reports
		n := hub.numReports()
		runAgent(t, cfg, nil)
		want := StatusReport{AgentVersion: "test-version", KubernetesVersion: v.GitVersion, NodeCount: 1}
		got, n := hub.waitReport("at connect", n, func(hubReport) bool { return true })
		if diff := cmp.Diff(want, got.Report); diff != "" {
			t.Errorf("first report (-want +got):\n%s", diff)
		}
		cut.set(true)
		// A check in flight when the connection was cut may report its own
		// failure first; the probe's verdict follows.
		got, n = hub.waitReport("API server unreachable", n, func(r hubReport) bool {
			return strings.HasPrefix(r.Report.LastError, "API server unreachable")
		})
		if !strings.HasPrefix(got.Report.LastError, "API server unreachable") || got.Report.NodeCount != -1 {
			t.Errorf("report with the API server cut off: %+v", got.Report)
		}
		cut.set(false)
		got, _ = hub.waitReport("recovery", n, func(r hubReport) bool { return r.Report.LastError == "" })
		if diff := cmp.Diff(want, got.Report); diff != "" {
			t.Errorf("report after recovery (-want +got):\n%s", diff)
		}
	})

	t.Run("missing permissions are reported until granted", func(t *testing.T) {
		cfg := config(bare, "")
		cfg.StatusInterval = 200 * time.Millisecond // permissions are checked again at each report
		n := hub.numReports()
		runAgent(t, cfg, nil)
		got, n := hub.waitReport("missing permissions", n, func(r hubReport) bool { return r.Report.LastError != "" })
		for _, s := range []string{"lack 2 permission(s): impersonate users, impersonate groups", "count nodes (the agent needs list on nodes)", "forbidden"} {
			if !strings.Contains(got.Report.LastError, s) {
				t.Errorf("LastError %q does not mention %q", got.Report.LastError, s)
			}
		}
		if got.Report.NodeCount != -1 {
			t.Errorf("node count %d without list on nodes, want -1", got.Report.NodeCount)
		}
		c.kubectl(t, ctx, "", "create", "clusterrolebinding", "bare-agent", "--clusterrole=tether-agent", "--serviceaccount=tether-system:bare")
		c.kubectl(t, ctx, "", "create", "clusterrolebinding", "bare-nodes", "--clusterrole=tether-agent-nodes", "--serviceaccount=tether-system:bare")
		got, n = hub.waitReport("no error once granted", n, func(r hubReport) bool { return r.Report.LastError == "" })
		if got.Report.NodeCount != 1 {
			t.Errorf("node count %d, want 1", got.Report.NodeCount)
		}
		// More nodes than one page of the count holds (Node objects only;
		// no kubelet behind them).
		for _, name := range []string{"extra-1", "extra-2"} {
			if _, err := c.admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.admin.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		}
		hub.waitReport("three nodes", n, func(r hubReport) bool { return r.Report.NodeCount == 3 })
	})

	t.Run("Secret writes never overwrite a complete state", func(t *testing.T) {
		client, err := kubernetes.NewForConfig(c.agent)
		if err != nil {
			t.Fatal(err)
		}
		ours, theirs := testState(t), testState(t)
		theirsKey, theirsHub := theirs.encode()
		complete := map[string][]byte{StateKeyFile: theirsKey, StateHubFile: theirsHub}
		empty := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}}
		tests := []struct {
			name string
			// existing is the Secret before save; nil: none.
			existing *corev1.Secret
			// meanwhile is another writer's change, between save's read and write.
			meanwhile func() error
			wantErr   error
			wantKey   ed25519.PublicKey
			wantLabel string // app.kubernetes.io/instance, kept from the installer
		}{
			{name: "no Secret: created", wantKey: ours.key.Public().(ed25519.PublicKey)},
			{name: "an empty Secret from the installer: filled in, its labels kept",
				existing: withLabel(empty, "installer"), wantKey: ours.key.Public().(ed25519.PublicKey), wantLabel: "installer"},
			{name: "the installer relabels meanwhile: conflict, read again, filled in",
				existing: withLabel(empty, "installer"), wantKey: ours.key.Public().(ed25519.PublicKey), wantLabel: "relabelled",
				meanwhile: func() error {
					return patchSecret(ctx, secrets, ref.Name, `{"metadata":{"labels":{"app.kubernetes.io/instance":"relabelled"}}}`)
				}},
			{name: "another replica stores its state meanwhile (update): theirs is kept",
				existing: empty, wantErr: errStateExists, wantKey: theirs.key.Public().(ed25519.PublicKey),
				meanwhile: func() error {
					b, _ := json.Marshal(map[string]any{"data": complete})
					return patchSecret(ctx, secrets, ref.Name, string(b))
				}},
			{name: "another replica creates the Secret meanwhile: theirs is kept",
				wantErr: errStateExists, wantKey: theirs.key.Public().(ed25519.PublicKey),
				meanwhile: func() error {
					_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Data: complete}, metav1.CreateOptions{})
					return err
				}},
			{name: "a complete Secret: left alone", existing: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Data: complete},
				wantErr: errStateExists, wantKey: theirs.key.Public().(ed25519.PublicKey)},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := secrets.Delete(ctx, ref.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
				if tt.existing != nil {
					if _, err := secrets.Create(ctx, tt.existing, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				store := secretState{secrets: &racingSecrets{SecretsGetter: client.CoreV1(), meanwhile: tt.meanwhile}, ref: ref}
				if err := store.prepare(ctx); err != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("prepare: %v", err)
				}
				if err := store.save(ctx, ours); !errors.Is(err, tt.wantErr) {
					t.Fatalf("save: %v, want %v", err, tt.wantErr)
				}
				if got := storedKey(t); !got.Equal(tt.wantKey) {
					t.Errorf("the stored key is not the one expected")
				}
				sec, err := secrets.Get(ctx, ref.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if got := sec.Labels["app.kubernetes.io/instance"]; got != tt.wantLabel {
					t.Errorf("installer's label %q, want %q", got, tt.wantLabel)
				}
			})
		}
	})
}

func testState(t *testing.T) storedState {
	t.Helper()
	key, err := agentkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return storedState{key: key, hub: EnrollResponse{Cluster: testCluster, HubID: "test-hub", HubKeys: []string{"unused"}}}
}

func withLabel(s *corev1.Secret, instance string) *corev1.Secret {
	s = s.DeepCopy()
	s.Labels = map[string]string{"app.kubernetes.io/instance": instance}
	return s
}

func patchSecret(ctx context.Context, secrets corev1client.SecretInterface, name, patch string) error {
	_, err := secrets.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}

// racingSecrets runs meanwhile once, just before the first real (not dry
// run) create or update: another writer's change between the store's read
// and its write.
type racingSecrets struct {
	corev1client.SecretsGetter
	meanwhile func() error
	once      sync.Once
	err       error
}

func (r *racingSecrets) Secrets(ns string) corev1client.SecretInterface {
	return racingSecretInterface{r.SecretsGetter.Secrets(ns), r}
}

func (r *racingSecrets) race(dryRun []string) error {
	if len(dryRun) == 0 && r.meanwhile != nil {
		r.once.Do(func() { r.err = r.meanwhile() })
	}
	return r.err
}

type racingSecretInterface struct {
	corev1client.SecretInterface
	r *racingSecrets
}

func (s racingSecretInterface) Create(ctx context.Context, sec *corev1.Secret, opts metav1.CreateOptions) (*corev1.Secret, error) {
	if err := s.r.race(opts.DryRun); err != nil {
		return nil, err
	}
	return s.SecretInterface.Create(ctx, sec, opts)
}

func (s racingSecretInterface) Update(ctx context.Context, sec *corev1.Secret, opts metav1.UpdateOptions) (*corev1.Secret, error) {
	if err := s.r.race(opts.DryRun); err != nil {
		return nil, err
	}
	return s.SecretInterface.Update(ctx, sec, opts)
}

// cutter forwards TCP connections to target until it is cut: then it
// closes every connection and refuses new ones until restored.
type cutter struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex // guards cut and conns
	cut    bool
	conns  map[net.Conn]struct{}
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Go(c.accept)
	t.Cleanup(func() {
		l.Close()
		c.set(true)
		c.wg.Wait()
	})
	return c
}

func (c *cutter) addr() string { return c.l.Addr().String() }

// set cuts (true) or restores (false) the connection.
func (c *cutter) set(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for conn := range c.conns {
			conn.Close()
		}
	}
}

// track adds conn unless cut, in which case it closes it.
func (c *cutter) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		conn.Close()
		return false
	}
	c.conns[conn] = struct{}{}
	return true
}

func (c *cutter) untrack(conns ...net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
		delete(c.conns, conn)
	}
}

func (c *cutter) accept() {
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		if !c.track(in) {
			continue
		}
		c.wg.Go(func() {
			out, err := net.DialTimeout("tcp", c.target, 5*time.Second)
			if err != nil {
				c.untrack(in)
				return
			}
			if !c.track(out) {
				c.untrack(in)
				return
			}
			done := make(chan struct{}, 2) // one per direction
			go func() { io.Copy(out, in); done <- struct{}{} }()
			go func() { io.Copy(in, out); done <- struct{}{} }()
			<-done
			c.untrack(in, out) // ends the other direction
			<-done
		})
	}
}
