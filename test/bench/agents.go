package bench

// Many agents and the reconnect storm: thousands of lightweight agents in
// this process, each with a cluster of its own registered (admin API) and
// enrolled (join token, Ed25519 key), each holding a real tunnel to one
// real `tether hub` process.
//
//	bench process                                          tether hub (SQLite)
//	  fleet ── POST /api/v1/clusters, admin token ──────►  N clusters
//	        ── POST /api/v1/agent/enroll, join token ───►  N agent keys
//	  N × lightAgent ══ wss (TLS), yamux, agent proof ══►  N idle tunnels
//
// A lightweight agent dials as the real agent does (tunnel.Dial, its proof
// signed with agentkey, a TLS handshake of its own per dial) and reconnects
// with the real agent's policy (package backoff, at once after a GoAway),
// but serves nothing on its tunnel: it is idle, and costs this process a
// few goroutines.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/backoff"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/tunnel"
)

// Agents measures the hub's cost of many connected idle agents: its
// resident memory per agent and its CPU at idle (keepalives, heartbeats),
// at 1,000 and then 10,000 agents on one hub.
var Agents = Section{Name: "agents", Run: runAgents}

// Reconnect restarts a hub with 1,000 agents connected and measures how
// soon each agent is back, how soon all are, and the new hub's peak CPU
// and memory meanwhile.
var Reconnect = Section{Name: "reconnect", Run: runReconnect}

// The real agent's reconnect settings, which `tether agent` uses.
const (
	agentMinBackoff  = agent.DefaultMinBackoff
	agentMaxBackoff  = agent.DefaultMaxBackoff
	agentStableAfter = agent.DefaultStableAfter
	agentGoAwayAfter = agent.GoAwayAfter
)

// benchGroup is the group of the lightweight agents' clusters.
const benchGroup = "bench-agents"

// agentsScale sizes the agents and reconnect sections.
type agentsScale struct {
	// counts are the numbers of agents measured in turn, on one hub (each
	// step adds agents to the previous one's).
	counts []int
	// settle is how long the hub is left alone before its memory is read.
	settle time.Duration
	// window is how long idle CPU is measured: at least one keepalive
	// interval (20 s) and one heartbeat interval (30 s).
	window time.Duration
	// storm is how many agents are connected when the hub restarts.
	storm int
	// enrollers register and enroll agents concurrently.
	enrollers int
	// dialers bound the agents' first dials in flight (a fleet coming up
	// over some seconds, not the storm).
	dialers int
	// connectLimit bounds the wait for every agent to connect.
	connectLimit time.Duration
}

func agentsScaleFor(quick bool) agentsScale {
	if quick {
		return agentsScale{counts: []int{20, 50}, settle: 500 * time.Millisecond, window: 2 * time.Second,
			storm: 50, enrollers: 8, dialers: 64, connectLimit: time.Minute}
	}
	return agentsScale{counts: []int{1000, 10000}, settle: 5 * time.Second, window: 30 * time.Second,
		storm: 1000, enrollers: 8, dialers: 64, connectLimit: 3 * time.Minute}
}

// AgentsStep is what the agents section measured with N agents connected.
type AgentsStep struct {
	N int
	// Enroll and Connect are how long registering and enrolling, then
	// connecting, all N agents took (the steps so far added up).
	Enroll, Connect time.Duration
	// RSSBefore is the hub's resident memory before any agent; RSS with N
	// connected, after settling.
	RSSBefore, RSS int64
	// CPU is what the hub used over Window with N idle agents.
	CPU, Window time.Duration
	// HubConnected is how many of the bench clusters the hub's admin API
	// shows connected after the window; Redials, how many tunnels the
	// agents dialled again during the step (zero when the tunnels held).
	HubConnected, Redials int
}

// RSSPerAgent is the hub's resident memory per connected agent, in KiB.
func (s AgentsStep) RSSPerAgent() float64 {
	return float64(s.RSS-s.RSSBefore) / float64(s.N) / 1024
}

// CPUPercent is the hub's idle CPU in percent of one core.
func (s AgentsStep) CPUPercent() float64 { return 100 * s.CPU.Seconds() / s.Window.Seconds() }

// CPUPerAgent is the hub's idle CPU per agent, in µs per second.
func (s AgentsStep) CPUPerAgent() float64 {
	return float64(s.CPU.Microseconds()) / s.Window.Seconds() / float64(s.N)
}

func runAgents(ctx context.Context, o Options, r *Report) error {
	steps, err := MeasureAgents(ctx, o)
	if err != nil {
		return err
	}
	r.Add(agentsFigures(steps)...)
	return nil
}

// MeasureAgents runs the agents section and returns its measurements.
func MeasureAgents(ctx context.Context, o Options) ([]AgentsStep, error) {
	sc := agentsScaleFor(o.Quick)
	if err := raiseFileLimit(uint64(sc.counts[len(sc.counts)-1]) + 1024); err != nil {
		return nil, err
	}
	dir := filepath.Join(o.Dir, "agents")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	o.Logf("agents: starting a hub")
	h, err := StartHub(ctx, o.Tether, filepath.Join(dir, "hub"), "--drain-delay", "0", "--drain-grace", "1s")
	if err != nil {
		return nil, err
	}
	f, err := newFleet(h)
	if err != nil {
		h.Stop(10 * time.Second)
		return nil, err
	}
	defer func() {
		f.close()
		h.Stop(10 * time.Second)
	}()
	pid := h.Process.Pid()
	if !sleepFor(ctx, sc.settle) {
		return nil, ctx.Err()
	}
	before, err := ReadProc(pid)
	if err != nil {
		return nil, err
	}
	var steps []AgentsStep
	var enroll, connect time.Duration
	for _, n := range sc.counts {
		add := n - len(f.agents)
		o.Logf("agents: registering and enrolling %d more agents (%d at a time)", add, sc.enrollers)
		start := time.Now()
		agents, err := f.enroll(ctx, add, sc.enrollers)
		if err != nil {
			return nil, err
		}
		enroll += time.Since(start)
		o.Logf("agents: connecting them (%d dials at a time)", sc.dialers)
		start = time.Now()
		f.start(ctx, agents, sc.dialers)
		if err := f.waitUp(ctx, n, sc.connectLimit); err != nil {
			return nil, err
		}
		connect += time.Since(start)
		dials := f.dials()
		if !sleepFor(ctx, sc.settle) {
			return nil, ctx.Err()
		}
		st, err := ReadProc(pid)
		if err != nil {
			return nil, err
		}
		o.Logf("agents: %d connected; hub RSS %.1f MiB (%.1f MiB before any agent); measuring idle CPU for %s",
			n, float64(st.RSS)/(1<<20), float64(before.RSS)/(1<<20), sc.window)
		m, err := MeterCPU(pid)
		if err != nil {
			return nil, err
		}
		start = time.Now()
		if !sleepFor(ctx, sc.window) {
			return nil, ctx.Err()
		}
		_, cpu, err := m.Used()
		if err != nil {
			return nil, err
		}
		window := time.Since(start)
		connected, err := f.hubConnected(ctx)
		if err != nil {
			return nil, err
		}
		steps = append(steps, AgentsStep{N: n, Enroll: enroll, Connect: connect, RSSBefore: before.RSS, RSS: st.RSS,
			CPU: cpu, Window: window, HubConnected: connected, Redials: f.dials() - dials})
		if up := int(f.up.Load()); up != n || connected != n {
			return steps, fmt.Errorf("%d agents dialled, %d tunnels up, the hub shows %d connected", n, up, connected)
		}
	}
	return steps, nil
}

func agentsFigures(steps []AgentsStep) []Figure {
	var fs []Figure
	for i, s := range steps {
		p := fmt.Sprintf("%d agents: ", s.N)
		rss := Plain("agents", p+"hub RSS per agent", "KiB", s.RSSPerAgent()).
			WithNote(fmt.Sprintf("hub RSS %.0f MiB, %.0f MiB before any agent", float64(s.RSS)/(1<<20), float64(s.RSSBefore)/(1<<20)))
		if i == len(steps)-1 {
			rss = rss.AtMost(32, false)
		}
		fs = append(fs, rss,
			Plain("agents", p+"hub idle CPU", "% core", s.CPUPercent()).
				WithNote(fmt.Sprintf("over %.0f s: keepalives both ways every 20 s, a heartbeat every 30 s", s.Window.Seconds())),
			Plain("agents", p+"hub idle CPU per agent", "µs/s", s.CPUPerAgent()),
			Plain("agents", p+"register + enroll", "s", s.Enroll.Seconds()).
				WithNote("admin API and enrollment, 8 at a time; the steps so far added up"),
			Plain("agents", p+"connect", "s", s.Connect.Seconds()).
				WithNote("first dials, 64 at a time; the steps so far added up"),
		)
	}
	return fs
}

// StormResult is what the reconnect section measured.
type StormResult struct {
	N int
	// OldPID and NewPID are the hub processes before and after the restart.
	OldPID, NewPID int
	// Stopped is from SIGTERM to the old hub's exit; Down, to the new hub's
	// first ready answer.
	Stopped, Down time.Duration
	// Back is, for each agent, from the new hub's first ready answer to
	// its tunnel's dial succeeding (zero if it was up before); -1 for an
	// agent that did not come back.
	Back []time.Duration
	// All is from SIGTERM until every agent was back.
	All time.Duration
	// Dials are the dial attempts the agents made from SIGTERM until all
	// were back, successful or not.
	Dials int
	// PeakCPU is the new hub's peak CPU in percent of one core, sampled
	// every 100 ms from its start until every agent was back; PeakRSS its
	// VmHWM then.
	PeakCPU float64
	PeakRSS int64
}

// Reconnected is how many agents came back.
func (s StormResult) Reconnected() int {
	n := 0
	for _, d := range s.Back {
		if d >= 0 {
			n++
		}
	}
	return n
}

func runReconnect(ctx context.Context, o Options, r *Report) error {
	s, err := MeasureStorm(ctx, o)
	if err != nil {
		return err
	}
	r.Add(stormFigures(s)...)
	return nil
}

// MeasureStorm runs the reconnect section and returns its measurements.
func MeasureStorm(ctx context.Context, o Options) (StormResult, error) {
	sc := agentsScaleFor(o.Quick)
	res := StormResult{N: sc.storm}
	if err := raiseFileLimit(uint64(sc.storm) + 1024); err != nil {
		return res, err
	}
	dir := filepath.Join(o.Dir, "reconnect")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, err
	}
	o.Logf("reconnect: starting a hub")
	h, err := StartHub(ctx, o.Tether, filepath.Join(dir, "hub"), "--drain-delay", "0", "--drain-grace", "1s")
	if err != nil {
		return res, err
	}
	f, err := newFleet(h)
	if err != nil {
		h.Stop(10 * time.Second)
		return res, err
	}
	defer func() {
		f.close()
		if h.Process != nil { // nil if the restart could not start it
			h.Stop(10 * time.Second)
		}
	}()
	o.Logf("reconnect: registering, enrolling and connecting %d agents", sc.storm)
	agents, err := f.enroll(ctx, sc.storm, sc.enrollers)
	if err != nil {
		return res, err
	}
	f.start(ctx, agents, sc.dialers)
	if err := f.waitUp(ctx, sc.storm, sc.connectLimit); err != nil {
		return res, err
	}
	// Up long enough that a GoAway sends them straight back, as it would
	// the real agent.
	if !sleepFor(ctx, agentGoAwayAfter+time.Second) {
		return res, ctx.Err()
	}

	o.Logf("reconnect: restarting the hub")
	res.OldPID = h.Process.Pid()
	dials := f.dials()
	stop := time.Now()
	if err := h.Stop(10 * time.Second); err != nil {
		return res, err
	}
	res.Stopped = time.Since(stop)
	started := make(chan error, 1)
	go func() { started <- h.Start(ctx) }()
	ready, err := pollReady(ctx, h, 5*time.Millisecond, time.Minute)
	if err := errors.Join(err, <-started); err != nil {
		return res, fmt.Errorf("restart the hub: %w", err)
	}
	res.Down = ready.Sub(stop)
	res.NewPID = h.Process.Pid()
	sampler := sampleCPU(res.NewPID, 100*time.Millisecond)
	upErr := f.waitBack(ctx, stop, sc.connectLimit)
	res.PeakCPU = sampler.stop()
	res.Dials = f.dials() - dials
	st, err := ReadProc(res.NewPID)
	if err != nil {
		return res, err
	}
	res.PeakRSS = st.HWM
	last := stop
	for _, a := range f.agents {
		at, ok := a.upSince(stop)
		if !ok {
			res.Back = append(res.Back, -1)
			continue
		}
		res.Back = append(res.Back, max(at.Sub(ready), 0))
		if at.After(last) {
			last = at
		}
	}
	res.All = last.Sub(stop)
	o.Logf("reconnect: the hub stopped %.2f s and was ready %.2f s after SIGTERM; every agent was back %.2f s after", res.Stopped.Seconds(), res.Down.Seconds(), res.All.Seconds())
	if upErr != nil {
		return res, upErr
	}
	return res, nil
}

func stormFigures(s StormResult) []Figure {
	back := slices.Clone(s.Back)
	slices.Sort(back)
	l := Latencies(back)
	p := fmt.Sprintf("%d agents: ", s.N)
	return []Figure{
		Plain("reconnect", p+"back after the hub, median", "s", l.Quantile(0.5).Seconds()).AtMost(0.3, false).
			WithNote("from the new hub's first ready answer to the agent's dial succeeding"),
		Plain("reconnect", p+"back after the hub, worst", "s", l.Quantile(1).Seconds()).AtMost(1.5, false),
		Plain("reconnect", p+"all reconnected", "s", s.All.Seconds()).AtMost(10, false).
			WithNote(fmt.Sprintf("from SIGTERM; the old hub exited after %.2f s, the new one was ready after %.2f s", s.Stopped.Seconds(), s.Down.Seconds())),
		Plain("reconnect", p+"dial attempts per agent", "dials", float64(s.Dials)/float64(s.N)).
			WithNote("from SIGTERM until all were back, the successful one included"),
		Plain("reconnect", p+"peak hub CPU", "% core", s.PeakCPU).WithNote("the new hub, sampled every 100 ms"),
		Plain("reconnect", p+"peak hub RSS", "MiB", float64(s.PeakRSS)/(1<<20)).WithNote("VmHWM of the new hub"),
	}
}

// fleet is a set of lightweight agents with clusters on one hub.
type fleet struct {
	hub   *Hub
	roots *x509.CertPool
	admin string
	api   *http.Client // admin API and enrollment

	agents  []*lightAgent // only the section's goroutine changes it
	up      atomic.Int64  // tunnels up now
	cancels []context.CancelFunc
	wg      sync.WaitGroup // the agents' goroutines

	mu      sync.Mutex // guards refused
	refused error      // a permanent refusal, which stopped an agent
}

func newFleet(h *Hub) (*fleet, error) {
	tc, err := h.TLS()
	if err != nil {
		return nil, err
	}
	token, err := os.ReadFile(h.Admin)
	if err != nil {
		return nil, fmt.Errorf("read the admin token: %w", err)
	}
	t := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	return &fleet{hub: h, roots: tc.RootCAs, admin: strings.TrimSpace(string(token)),
		api: &http.Client{Transport: t, Timeout: 30 * time.Second}}, nil
}

// enroll registers n more clusters and enrolls an agent for each, workers
// at a time, and returns the new agents (not connected yet).
func (f *fleet) enroll(ctx context.Context, n, workers int) ([]*lightAgent, error) {
	first := len(f.agents)
	agents := make([]*lightAgent, n)
	next := make(chan int)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				a, err := f.enrollOne(ctx, fmt.Sprintf("agent-%05d", first+i))
				if err != nil {
					cancel(err)
					return
				}
				agents[i] = a
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	f.agents = append(f.agents, agents...)
	return agents, nil
}

// enrollOne registers cluster name through the admin API (as `tether
// cluster create` does) and enrolls a new key with its join token (as the
// agent does).
func (f *fleet) enrollOne(ctx context.Context, name string) (*lightAgent, error) {
	var created hub.CreatedCluster
	if err := f.post(ctx, "/api/v1/clusters", f.admin, hub.ClusterRequest{Group: benchGroup, Name: name}, &created); err != nil {
		return nil, fmt.Errorf("register cluster %s: %w", name, err)
	}
	key, err := agentkey.Generate()
	if err != nil {
		return nil, err
	}
	req := agent.EnrollRequest{PublicKey: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)), AgentVersion: "bench"}
	var en agent.EnrollResponse
	if err := f.post(ctx, agent.EnrollPath, created.Join.JoinToken, req, &en); err != nil {
		return nil, fmt.Errorf("enroll cluster %s: %w", name, err)
	}
	base, err := url.Parse(f.hub.URL)
	if en.TunnelURL != "" {
		base, err = url.Parse(en.TunnelURL)
	}
	if err != nil {
		return nil, err
	}
	u := *base
	u.Scheme = "wss"
	u.Path = strings.TrimSuffix(u.Path, "/") + agent.TunnelPath
	return &lightAgent{cluster: en.Cluster, key: key, url: u.String(), aud: base.Host, roots: f.roots}, nil
}

// post sends body as JSON with a bearer token and decodes a 2xx answer.
func (f *fleet) post(ctx context.Context, path, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.hub.URL+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	return f.do(req, out)
}

func (f *fleet) do(req *http.Request, out any) error {
	resp, err := f.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, out)
}

// hubConnected is how many of the fleet's clusters the hub shows connected.
func (f *fleet) hubConnected(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.hub.URL+"/api/v1/clusters?group="+benchGroup, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+f.admin)
	var views []hub.ClusterView
	if err := f.do(req, &views); err != nil {
		return 0, err
	}
	n := 0
	for _, v := range views {
		if v.Connected {
			n++
		}
	}
	return n, nil
}

// start runs agents until close, their first dials at most dialers at a
// time.
func (f *fleet) start(ctx context.Context, agents []*lightAgent, dialers int) {
	ctx, cancel := context.WithCancel(ctx)
	f.cancels = append(f.cancels, cancel)
	gate := make(chan struct{}, dialers) // a semaphore: dialers first dials in flight
	for _, a := range agents {
		f.wg.Go(func() { a.run(ctx, f, gate) })
	}
}

// close stops every agent (closing its tunnel) and waits for them.
func (f *fleet) close() {
	for _, cancel := range f.cancels {
		cancel()
	}
	f.wg.Wait()
	f.api.CloseIdleConnections()
}

// waitUp waits until n tunnels are up.
func (f *fleet) waitUp(ctx context.Context, n int, limit time.Duration) error {
	return f.wait(ctx, limit, func() bool { return f.up.Load() >= int64(n) },
		func() string { return fmt.Sprintf("%d of %d tunnels up", f.up.Load(), n) })
}

// waitBack waits until every agent has dialled a tunnel since t.
func (f *fleet) waitBack(ctx context.Context, t time.Time, limit time.Duration) error {
	back := func() int {
		n := 0
		for _, a := range f.agents {
			if _, ok := a.upSince(t); ok {
				n++
			}
		}
		return n
	}
	return f.wait(ctx, limit, func() bool { return back() == len(f.agents) },
		func() string { return fmt.Sprintf("%d of %d agents reconnected", back(), len(f.agents)) })
}

// wait polls done every 10 ms until it holds, an agent is refused, or
// limit passes.
func (f *fleet) wait(ctx context.Context, limit time.Duration, done func() bool, status func() string) error {
	deadline := time.Now().Add(limit)
	for !done() {
		f.mu.Lock()
		refused := f.refused
		f.mu.Unlock()
		if refused != nil {
			return fmt.Errorf("%s: %w", status(), refused)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %s (%s)", status(), limit, f.lastErr())
		}
		if !sleepFor(ctx, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
	return nil
}

// dials is how many dials the agents have attempted.
func (f *fleet) dials() int {
	n := 0
	for _, a := range f.agents {
		a.mu.Lock()
		n += a.dials
		a.mu.Unlock()
	}
	return n
}

// lastErr is the latest dial error of some agent, for messages.
func (f *fleet) lastErr() string {
	for _, a := range f.agents {
		a.mu.Lock()
		err := a.err
		a.mu.Unlock()
		if err != nil {
			return "an agent's last dial error: " + err.Error()
		}
	}
	return "no dial failed"
}

// lightAgent is one enrolled agent that keeps a tunnel up and idle.
type lightAgent struct {
	cluster string
	key     ed25519.PrivateKey
	url     string // the tunnel endpoint, wss://HOST/api/v1/agent/tunnel
	aud     string // HOST, its proofs' audience
	roots   *x509.CertPool

	mu    sync.Mutex  // guards the fields below
	ups   []time.Time // when each dial succeeded
	dials int         // dials attempted
	err   error       // the latest dial error
}

// run keeps a tunnel up as the real agent's serve loop does: on failure it
// waits the backoff, which a tunnel that stayed up StableAfter resets; after
// a GoAway it resets the backoff and redials at once. Its first dial waits for a place in gate. A
// permanent refusal (401, 403, 404, 410) stops it.
func (a *lightAgent) run(ctx context.Context, f *fleet, gate chan struct{}) {
	bo := backoff.New(agentMinBackoff, agentMaxBackoff)
	first := true
	for {
		if first {
			select {
			case gate <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		start := time.Now()
		sess, err := a.dial(ctx)
		if first {
			<-gate
			first = false
		}
		if err != nil {
			var he *tunnel.HandshakeError
			switch {
			case ctx.Err() != nil:
				return
			case errors.As(err, &he) && refusedForGood(he.StatusCode):
				f.mu.Lock()
				f.refused = fmt.Errorf("cluster %s: %w", a.cluster, err)
				f.mu.Unlock()
				return
			}
			if !sleepFor(ctx, bo.Next()) {
				return
			}
			continue
		}
		f.up.Add(1)
		movedAway := false
		select {
		case <-ctx.Done():
		case <-sess.Done():
		case <-sess.GoAwayReceived():
			movedAway = true
		}
		sess.Close()
		f.up.Add(-1)
		if ctx.Err() != nil {
			return
		}
		up := time.Since(start)
		if up >= agentStableAfter {
			bo.Reset()
		}
		if movedAway && up >= agentGoAwayAfter {
			bo.Reset()
			continue
		}
		if !sleepFor(ctx, bo.Next()) {
			return
		}
	}
}

// refusedForGood reports whether the agent would stop on this answer.
func refusedForGood(code int) bool {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// dial connects one tunnel with a fresh proof, over a connection of its own
// (a full TLS handshake, as the real agent's pinned client makes).
func (a *lightAgent) dial(ctx context.Context) (*tunnel.Session, error) {
	a.mu.Lock()
	a.dials++
	a.mu.Unlock()
	proof, err := agentkey.Sign(a.key, a.cluster, a.aud, time.Now())
	if err != nil {
		return nil, err
	}
	header := http.Header{}
	header.Set("Authorization", proof)
	header.Set(agent.HeaderAgentVersion, "bench")
	header.Set(agent.HeaderKubernetesVersion, "v1.37.2-bench")
	t := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: a.roots},
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	defer t.CloseIdleConnections()
	sess, err := tunnel.Dial(ctx, tunnel.DialConfig{URL: a.url, Header: header, Client: &http.Client{Transport: t}})
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.err = err
		return nil, err
	}
	a.ups = append(a.ups, time.Now())
	return sess, nil
}

// upSince returns when the agent's first tunnel after t came up.
func (a *lightAgent) upSince(t time.Time) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, at := range a.ups {
		if at.After(t) {
			return at, true
		}
	}
	return time.Time{}, false
}

// pollReady polls h's /readyz every interval, over one kept-alive
// connection, until it answers 200, and returns when it did.
func pollReady(ctx context.Context, h *Hub, every, limit time.Duration) (time.Time, error) {
	tc, err := h.TLS()
	if err != nil {
		return time.Time{}, err
	}
	t := &http.Transport{TLSClientConfig: tc}
	defer t.CloseIdleConnections()
	c := &http.Client{Transport: t, Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := c.Get(h.URL + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now(), nil
			}
			err = fmt.Errorf("readyz: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("hub not ready within %s: %w", limit, err)
		}
		if !sleepFor(ctx, every) {
			return time.Time{}, ctx.Err()
		}
	}
}

// cpuSampler samples a process's CPU time and keeps the peak rate.
type cpuSampler struct {
	quit chan struct{}
	done chan struct{}
	peak float64 // percent of one core; read after done
}

func sampleCPU(pid int, every time.Duration) *cpuSampler {
	s := &cpuSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		prev, err := ReadProc(pid)
		at := time.Now()
		for err == nil {
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
			var cur ProcStat
			if cur, err = ReadProc(pid); err != nil {
				return
			}
			now := time.Now()
			s.peak = max(s.peak, 100*(cur.CPU-prev.CPU).Seconds()/now.Sub(at).Seconds())
			prev, at = cur, now
		}
	}()
	return s
}

// stop ends the sampling and returns the peak.
func (s *cpuSampler) stop() float64 {
	close(s.quit)
	<-s.done
	return s.peak
}

// raiseFileLimit makes sure this process may open need descriptors: Go
// raises the soft limit to the hard one at start; this raises the hard one
// too if it can (as root), and says what to do if it cannot.
func raiseFileLimit(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= need {
		return nil
	}
	want := syscall.Rlimit{Cur: need, Max: max(l.Max, need)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return fmt.Errorf("this needs %d open files and RLIMIT_NOFILE is %d (hard %d): %w; raise it (ulimit -n)", need, l.Cur, l.Max, err)
	}
	return nil
}

// sleepFor waits d, or until ctx ends (then it returns false).
func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
