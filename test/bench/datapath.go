package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// The data-path sections: one tunnel each (StartTunnel), every figure
// against the direct connection to the same backend in the same run.
var (
	Requests = Section{Name: "requests", Run: runRequests}
	Bulk     = Section{Name: "bulk", Run: runBulk}
	Fairness = Section{Name: "fairness", Run: runFairness}
	Streams  = Section{Name: "streams", Run: runStreams}
)

// smallPath is what the small requests ask for.
const smallPath = "/api/v1/namespaces/bench/configmaps/small"

func runRequests(ctx context.Context, o Options, r *Report) error {
	t, err := StartTunnel(ctx, o.Tether, filepath.Join(o.Dir, "requests"))
	if err != nil {
		return err
	}
	defer t.Close()
	d, serial := 5*time.Second, 3*time.Second
	if o.Quick {
		d, serial = 500*time.Millisecond, 300*time.Millisecond
	}
	direct := t.Backend.URL + smallPath
	via := t.Gateway + smallPath
	const conns = 64
	run := func(url string, pool bool, workers int, h2 bool, d time.Duration) (LoadResult, error) {
		p := t.Backend.Pool
		if pool {
			p = t.HubPool
		}
		c := Client(p, workers, h2)
		defer c.CloseIdleConnections()
		res := Load(ctx, c, url, t.Token, workers, d)
		if res.Errors > 0 {
			return res, fmt.Errorf("%d of %d requests to %s failed, first: %v", res.Errors, res.Errors+res.Requests, url, res.FirstErr)
		}
		if res.Requests == 0 {
			return res, fmt.Errorf("no request to %s completed in %s", url, d)
		}
		return res, nil
	}

	// 64 connections, HTTP/1.1; the hub's and agent's CPU is read around
	// the tunnel's run.
	o.Logf("requests: 64 connections, HTTP/1.1, %s each", d)
	dres, err := run(direct, false, conns, false, d)
	if err != nil {
		return err
	}
	hubPid, agentPid := t.Pids()
	meter, err := MeterCPU(hubPid, agentPid)
	if err != nil {
		return err
	}
	tres, err := run(via, true, conns, false, d)
	if err != nil {
		return err
	}
	each, total, err := meter.Used()
	if err != nil {
		return err
	}
	perReq := micros(total) / float64(tres.Requests)
	r.Add(
		Compared("requests", "64 conns HTTP/1.1: rate", "req/s", dres.Rate(), tres.Rate()).AtLeast(0.35, true),
		Compared("requests", "64 conns HTTP/1.1: p50", "µs", micros(dres.Lat.Quantile(.5)), micros(tres.Lat.Quantile(.5))),
		Compared("requests", "64 conns HTTP/1.1: p99", "µs", micros(dres.Lat.Quantile(.99)), micros(tres.Lat.Quantile(.99))),
		Plain("requests", "hub+agent CPU per request", "µs", perReq).AtMost(60, false).
			WithNote(fmt.Sprintf("hub %.1f µs, agent %.1f µs (from /proc during the 64-connection run)",
				micros(each[0])/float64(tres.Requests), micros(each[1])/float64(tres.Requests))),
	)

	// kubectl's pattern: HTTP/2, one TLS connection, 64 streams.
	o.Logf("requests: HTTP/2, one connection, 64 streams")
	dres, err = run(direct, false, conns, true, d)
	if err != nil {
		return err
	}
	tres, err = run(via, true, conns, true, d)
	if err != nil {
		return err
	}
	r.Add(
		Compared("requests", "HTTP/2 1 conn 64 streams: rate", "req/s", dres.Rate(), tres.Rate()).AtLeast(0.5, true),
		Compared("requests", "HTTP/2 1 conn 64 streams: p99", "µs", micros(dres.Lat.Quantile(.99)), micros(tres.Lat.Quantile(.99))),
	)

	// One connection, one request at a time.
	o.Logf("requests: serial")
	dres, err = run(direct, false, 1, false, serial)
	if err != nil {
		return err
	}
	tres, err = run(via, true, 1, false, serial)
	if err != nil {
		return err
	}
	added := micros(tres.Lat.Quantile(.5)) - micros(dres.Lat.Quantile(.5))
	r.Add(
		Compared("requests", "serial: p50", "µs", micros(dres.Lat.Quantile(.5)), micros(tres.Lat.Quantile(.5))).
			WithTarget("<= 150 µs added", added <= 150).WithNote(fmt.Sprintf("%.0f µs added", added)),
		Compared("requests", "serial: p99", "µs", micros(dres.Lat.Quantile(.99)), micros(tres.Lat.Quantile(.99))),
		Compared("requests", "serial: rate", "req/s", dres.Rate(), tres.Rate()),
	)
	return nil
}

// bulkPath asks the backend for n bytes.
func bulkPath(n int64) string { return fmt.Sprintf("/bulk?bytes=%d", n) }

// download GETs url and reads the body whole, checking its length.
func download(ctx context.Context, c *http.Client, url, token string, want int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return err
	}
	if n != want {
		return fmt.Errorf("GET %s: %d bytes, want %d", url, n, want)
	}
	return nil
}

// parallel runs n downloads of size bytes each at once and returns the
// aggregate MiB/s.
func parallel(ctx context.Context, c *http.Client, base, token string, n int, size int64) (float64, error) {
	start := time.Now()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = download(ctx, c, base+bulkPath(size), token, size)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(n) * float64(size) / (1 << 20) / time.Since(start).Seconds(), nil
}

func runBulk(ctx context.Context, o Options, r *Report) error {
	t, err := StartTunnel(ctx, o.Tether, filepath.Join(o.Dir, "bulk"))
	if err != nil {
		return err
	}
	defer t.Close()
	size := int64(1 << 30)
	if o.Quick {
		size = 32 << 20
	}
	dc, tc := Client(t.Backend.Pool, 8, false), Client(t.HubPool, 8, false)
	defer dc.CloseIdleConnections()
	defer tc.CloseIdleConnections()

	o.Logf("bulk: one stream of %d MiB", size>>20)
	direct, err := parallel(ctx, dc, t.Backend.URL, t.Token, 1, size)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	hubPid, agentPid := t.Pids()
	meter, err := MeterCPU(hubPid, agentPid)
	if err != nil {
		return err
	}
	one, err := parallel(ctx, tc, t.Gateway, t.Token, 1, size)
	if err != nil {
		return fmt.Errorf("through the tunnel: %w", err)
	}
	each, total, err := meter.Used()
	if err != nil {
		return err
	}
	gib := float64(size) / (1 << 30)
	r.Add(
		Compared("bulk", "one stream", "MiB/s", direct, one).AtLeast(600, false),
		Plain("bulk", "one stream: hub+agent CPU", "CPU-s/GiB", total.Seconds()/gib).AtMost(2, false).
			WithNote(fmt.Sprintf("hub %.2f, agent %.2f", each[0].Seconds()/gib, each[1].Seconds()/gib)),
	)

	o.Logf("bulk: 8 streams of %d MiB at once", size>>20)
	direct8, err := parallel(ctx, dc, t.Backend.URL, t.Token, 8, size)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	eight, err := parallel(ctx, tc, t.Gateway, t.Token, 8, size)
	if err != nil {
		return fmt.Errorf("through the tunnel: %w", err)
	}
	r.Add(Compared("bulk", "8 streams together", "MiB/s", direct8, eight).AtLeast(600, false))

	rss, err := ReadProc(agentPid)
	if err != nil {
		return err
	}
	r.Add(Plain("bulk", "agent private memory (RssAnon) after the data path's load", "MiB", float64(rss.Anon)/(1<<20)).AtMost(20, false).
		WithNote(fmt.Sprintf("RSS %.0f MiB with the executable's shared pages", float64(rss.RSS)/(1<<20))))
	return nil
}

// stalled starts a GET of a body larger than anyone will read, reads its
// headers and then reads nothing (stop) or everything (drain) until ctx
// ends.
func stalled(ctx context.Context, c *http.Client, url, token string, drain bool) (<-chan error, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	done := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		if drain {
			_, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
			if ctx.Err() != nil {
				err = nil
			}
			done <- err
			return
		}
		<-ctx.Done()
		done <- nil
	}()
	return done, nil
}

func runFairness(ctx context.Context, o Options, r *Report) error {
	t, err := StartTunnel(ctx, o.Tether, filepath.Join(o.Dir, "fairness"))
	if err != nil {
		return err
	}
	defer t.Close()
	d := 3 * time.Second
	if o.Quick {
		d = 300 * time.Millisecond
	}
	small := Client(t.HubPool, 1, false)
	defer small.CloseIdleConnections()
	o.Logf("fairness: small requests on an idle tunnel")
	idle := Load(ctx, small, t.Gateway+smallPath, t.Token, 1, d)
	if idle.Errors > 0 || idle.Requests == 0 {
		return fmt.Errorf("small requests on the idle tunnel: %d done, %d failed: %v", idle.Requests, idle.Errors, idle.FirstErr)
	}

	o.Logf("fairness: small requests beside a saturating and a stalled stream")
	big := Client(t.HubPool, 2, false)
	defer big.CloseIdleConnections()
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	huge := t.Gateway + bulkPath(1<<40)
	saturating, err := stalled(lctx, big, huge, t.Token, true)
	if err != nil {
		return fmt.Errorf("saturating stream: %w", err)
	}
	stuck, err := stalled(lctx, big, huge, t.Token, false)
	if err != nil {
		return fmt.Errorf("stalled stream: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // the stalled stream's windows fill up
	loaded := Load(ctx, small, t.Gateway+smallPath, t.Token, 1, d)
	stop()
	if err := errors.Join(<-saturating, <-stuck); err != nil {
		return fmt.Errorf("the saturating or stalled stream failed: %w", err)
	}
	if loaded.Errors > 0 || loaded.Requests == 0 {
		return fmt.Errorf("small requests beside the big streams: %d done, %d failed: %v", loaded.Requests, loaded.Errors, loaded.FirstErr)
	}
	f := Compared("fairness", "small-request p99: idle tunnel vs beside a saturating and a stalled stream", "µs",
		micros(idle.Lat.Quantile(.99)), micros(loaded.Lat.Quantile(.99))).AtMost(5, true).
		WithNote(fmt.Sprintf("p50 %.0f -> %.0f µs; the direct column is the idle tunnel",
			micros(idle.Lat.Quantile(.5)), micros(loaded.Lat.Quantile(.5))))
	r.Add(f)
	return nil
}

func runStreams(ctx context.Context, o Options, r *Report) error {
	t, err := StartTunnel(ctx, o.Tether, filepath.Join(o.Dir, "streams"))
	if err != nil {
		return err
	}
	defer t.Close()
	n := 10000
	if o.Quick {
		n = 200
	}
	hubPid, agentPid := t.Pids()
	// A few watches first, so that what every process allocates once
	// (buffers, pools, the HTTP/2 connection) is not counted per stream.
	c := Client(t.HubPool, 0, true)
	defer c.CloseIdleConnections()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	watch := func() (io.Closer, error) {
		req, err := http.NewRequestWithContext(wctx, http.MethodGet, t.Gateway+"/api/v1/namespaces/bench/configmaps?watch=true", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+t.Token)
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("watch: %s", resp.Status)
		}
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("watch: first event: %w", err)
		}
		return resp.Body, nil
	}
	open := func(k int) ([]io.Closer, error) {
		out := make([]io.Closer, k)
		errs := make([]error, k)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for i := range k {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				out[i], errs[i] = watch()
			}()
		}
		wg.Wait()
		return out, errors.Join(errs...)
	}
	closeAll := func(bodies []io.Closer) {
		for _, b := range bodies {
			if b != nil {
				b.Close()
			}
		}
	}
	warm, err := open(100)
	closeAll(warm)
	if err != nil {
		return err
	}
	settle(t.Backend, 0)
	hub0, err := ReadProc(hubPid)
	if err != nil {
		return err
	}
	agent0, err := ReadProc(agentPid)
	if err != nil {
		return err
	}
	o.Logf("streams: opening %d watches", n)
	bodies, err := open(n)
	defer closeAll(bodies)
	if err != nil {
		return fmt.Errorf("open %d watches: %w", n, err)
	}
	if got := settle(t.Backend, int64(n)); got != int64(n) {
		return fmt.Errorf("%d watches open at the backend, want %d", got, n)
	}
	time.Sleep(time.Second)
	hub1, err := ReadProc(hubPid)
	if err != nil {
		return err
	}
	agent1, err := ReadProc(agentPid)
	if err != nil {
		return err
	}
	per := func(a, b ProcStat) float64 { return float64(b.RSS-a.RSS) / 1024 / float64(n) }
	r.Add(
		Plain("streams", fmt.Sprintf("hub memory per idle stream (%d watches)", n), "KiB", per(hub0, hub1)).AtMost(16, false).
			WithNote("RSS growth / streams; HTTP/2 from the client, as kubectl"),
		Plain("streams", fmt.Sprintf("agent memory per idle stream (%d watches)", n), "KiB", per(agent0, agent1)).AtMost(16, false),
	)
	closeAll(bodies)
	bodies = nil
	if got := settle(t.Backend, 0); got != 0 {
		return fmt.Errorf("%d watches still open at the backend after the clients closed theirs", got)
	}
	return nil
}

// settle waits (up to 30 s) until the backend holds want watches and
// returns how many it holds.
func settle(b *Backend, want int64) int64 {
	deadline := time.Now().Add(30 * time.Second)
	for b.Watching.Load() != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return b.Watching.Load()
}

// Restart is the reconnect of one real agent: the hub is stopped (SIGTERM,
// no drain delay) and started again, several times; each time, how long
// after the new hub is ready a request through the tunnel succeeds again.
var Restart = Section{Name: "restart", Run: runRestart}

func runRestart(ctx context.Context, o Options, r *Report) error {
	t, err := StartTunnel(ctx, o.Tether, filepath.Join(o.Dir, "restart"), "--drain-delay", "0", "--drain-grace", "1s")
	if err != nil {
		return err
	}
	defer t.Close()
	n := 10
	if o.Quick {
		n = 2
	}
	c := Client(t.HubPool, 1, false)
	c.Timeout = time.Second
	defer c.CloseIdleConnections()
	var usable Latencies
	for i := range n {
		if err := t.Hub.Stop(10 * time.Second); err != nil {
			return err
		}
		c.CloseIdleConnections()
		if err := t.Hub.Start(ctx); err != nil {
			return fmt.Errorf("restart %d: %w", i+1, err)
		}
		ready := time.Now()
		deadline := ready.Add(30 * time.Second)
		for {
			err := Get(ctx, c, t.Gateway+smallPath, t.Token)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("restart %d: no request went through within 30 s of the hub being ready: %v\nagent log:\n%s", i+1, err, t.Agent.Tail(20))
			}
			time.Sleep(5 * time.Millisecond)
		}
		usable = append(usable, time.Since(ready))
		// A restart within the agent's stable window would grow its
		// backoff as in a flapping hub; this measures a plain restart.
		if i < n-1 {
			time.Sleep(time.Second)
		}
	}
	slices.Sort(usable)
	r.Add(
		Plain("reconnect", fmt.Sprintf("one agent usable again after the hub is back: median of %d restarts", n), "s", usable.Quantile(.5).Seconds()).AtMost(0.3, false),
		Plain("reconnect", fmt.Sprintf("one agent usable again after the hub is back: worst of %d restarts", n), "s", usable[len(usable)-1].Seconds()).AtMost(1.5, false),
	)
	return nil
}
