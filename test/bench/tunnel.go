package bench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"tether.dev/tether/test/rig"
)

// Tunnel is the data path under measurement: the backend, a hub, and a
// real agent whose "API server" is the backend, all on loopback.
//
//	direct:  load ──TLS──► backend
//	tunnel:  load ──TLS──► tether hub ══ wss, yamux ══ tether agent ──TLS──► backend
type Tunnel struct {
	Backend *Backend
	Hub     *Hub
	Agent   *rig.Process
	// Gateway is the hub's URL prefix for the cluster:
	// https://HUB/k8s/bench/edge (append the backend path).
	Gateway string
	// HubPool trusts the hub's certificate.
	HubPool *x509.CertPool
	// Token is the bearer token requests carry: opaque to the hub, so the
	// request goes in token mode, the agent passes it on, the backend
	// ignores it.
	Token string
}

// StartTunnel starts the backend, a hub with its data in dir/hub (and
// hubArgs), registers cluster bench/edge and starts its agent, and waits
// until a request goes through.
func StartTunnel(ctx context.Context, tether, dir string, hubArgs ...string) (*Tunnel, error) {
	t := &Tunnel{Token: "bench-caller-token"}
	var err error
	if t.Backend, err = StartBackend(); err != nil {
		return nil, err
	}
	if t.Hub, err = StartHub(ctx, tether, filepath.Join(dir, "hub"), hubArgs...); err != nil {
		t.Close()
		return nil, err
	}
	join, err := t.Hub.CreateCluster(ctx, "bench", "edge")
	if err != nil {
		t.Close()
		return nil, err
	}
	kc := filepath.Join(dir, "backend.kubeconfig")
	if err := t.Backend.Kubeconfig(kc); err != nil {
		t.Close()
		return nil, err
	}
	if t.Agent, err = StartAgent(tether, t.Hub, kc, join, filepath.Join(dir, "agent")); err != nil {
		t.Close()
		return nil, err
	}
	t.Gateway = t.Hub.URL + "/k8s/bench/edge"
	tc, err := t.Hub.TLS()
	if err != nil {
		t.Close()
		return nil, err
	}
	t.HubPool = tc.RootCAs
	c := Client(tc.RootCAs, 1, false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := Get(ctx, c, t.Gateway+"/version", t.Token)
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Close()
			return nil, fmt.Errorf("no request went through the tunnel within 30 s: %v\nagent log:\n%s", err, t.Agent.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return t, nil
}

// Pids are the hub's and the agent's process IDs.
func (t *Tunnel) Pids() (hub, agent int) { return t.Hub.Process.Pid(), t.Agent.Pid() }

// Close stops everything.
func (t *Tunnel) Close() error {
	var errs []error
	if t.Agent != nil {
		errs = append(errs, t.Agent.Stop(syscall.SIGTERM, 10*time.Second))
	}
	if t.Hub != nil && t.Hub.Process != nil {
		errs = append(errs, t.Hub.Stop(10*time.Second))
	}
	if t.Backend != nil {
		t.Backend.Close()
	}
	return errors.Join(errs...)
}

// MkdirTemp makes the run's working directory.
func MkdirTemp() (string, error) { return os.MkdirTemp("", "tether-bench-") }
