package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Latencies is a sorted set of request latencies.
type Latencies []time.Duration

// Quantile returns the q-quantile (0 < q <= 1), nearest rank.
func (l Latencies) Quantile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(q*float64(len(l))+0.5) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// LoadResult is what one load run measured.
type LoadResult struct {
	Requests int
	Errors   int
	FirstErr error
	Elapsed  time.Duration
	Lat      Latencies
}

// Rate is requests per second.
func (r LoadResult) Rate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Client makes an HTTPS client trusting pool, with up to conns connections;
// h2 chooses HTTP/2 (one connection, streams multiplexed, as client-go
// does), otherwise HTTP/1.1 only.
func Client(pool *x509.CertPool, conns int, h2 bool) *http.Client {
	tc := &tls.Config{RootCAs: pool}
	t := &http.Transport{
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	if h2 {
		t.ForceAttemptHTTP2 = true
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)
		t.MaxConnsPerHost = 0
	} else {
		tc.NextProtos = []string{"http/1.1"}
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: t}
}

// Get does one GET, reads the body whole and checks the status.
func Get(ctx context.Context, c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// Load runs workers goroutines that GET url back to back for d (RunLoad).
func Load(ctx context.Context, c *http.Client, url, token string, workers int, d time.Duration) LoadResult {
	return RunLoad(ctx, workers, d, func(ctx context.Context) error { return Get(ctx, c, url, token) })
}

// RunLoad runs workers goroutines that call do back to back for d (after a
// warm-up of one call each, not counted) and returns every latency.
func RunLoad(ctx context.Context, workers int, d time.Duration, do func(context.Context) error) LoadResult {
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = do(ctx) }()
	}
	wg.Wait()
	lats := make([][]time.Duration, workers)
	errs := make([]int, workers)
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	deadline := start.Add(d)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 4096)
			for {
				t0 := time.Now()
				if t0.After(deadline) || ctx.Err() != nil {
					break
				}
				if err := do(ctx); err != nil {
					errs[w]++
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	r := LoadResult{Elapsed: time.Since(start), FirstErr: firstErr}
	for w := range workers {
		r.Lat = append(r.Lat, lats[w]...)
		r.Errors += errs[w]
	}
	r.Requests = len(r.Lat)
	slices.Sort(r.Lat)
	return r
}

// micros is d in microseconds.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
