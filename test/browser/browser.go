// Package browser runs a real headless Chromium for Tether's end-to-end
// tests, driven over the DevTools protocol by github.com/chromedp/chromedp,
// so that web pages (the hub's sign-in pages, later a web console) are
// tested the way a user meets them: real HTML forms, real redirects, real
// TLS.
//
//	test (Go) ── Start ──► chromium-headless-shell --remote-debugging-pipe
//	    │                      (own temporary profile, removed by Close)
//	    ├─ NewTab ──► one tab per chromedp context; console ──► Options.Log
//	    └─ chromedp actions, SubmitForm ──► the page ──► servers under test
//	                                           (https with a pinned cert, or
//	                                            plain http on loopback)
//
// The browser accepts exactly the certificates in Options.TrustPEM, pinned
// by their public key; it never ignores certificate errors wholesale.
package browser

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumEnv names the environment variable that picks the browser binary.
const chromiumEnv = "TETHER_CHROMIUM"

// closeGrace is how long Close waits for the browser to shut down by itself
// before it is killed.
const closeGrace = 5 * time.Second

// Options configure Start.
type Options struct {
	// TrustPEM holds PEM certificates ("CERTIFICATE" blocks) the browser
	// must accept for TLS, such as the hub's self-signed certificate. Each
	// is pinned by the SHA-256 of its public key; every other certificate
	// is checked as usual. Empty: only the system's trusted roots.
	TrustPEM []byte
	// Log receives the console messages of every tab and chromedp's
	// errors, one line per write, from several goroutines but never two
	// at once. Nil: discarded.
	Log io.Writer
}

// Browser is a running Chromium. Close stops it.
type Browser struct {
	// ctx is chromedp's handle on the browser process, the parent of every
	// tab's context; it is not the context of any one call. Close cancels it.
	ctx         context.Context
	cancel      context.CancelFunc // ctx's, waits for the process to exit
	cancelAlloc context.CancelFunc // the allocator's, waits for its goroutines

	log     io.Writer
	proc    *os.Process
	dataDir string // the profile directory chromedp made for this browser

	tabs      sync.WaitGroup // the console readers of open tabs
	closeOnce sync.Once
}

// Start finds Chromium and starts it with a temporary profile; ctx bounds
// only the start. The binary is $TETHER_CHROMIUM if set, else the first of
// chromium-headless-shell, chromium and google-chrome on PATH.
func Start(ctx context.Context, opts Options) (*Browser, error) {
	path, err := FindChromium()
	if err != nil {
		return nil, err
	}
	spki, err := SPKIHashes(opts.TrustPEM)
	if err != nil {
		return nil, err
	}
	logw := io.Discard
	if opts.Log != nil {
		logw = &lockedWriter{w: opts.Log}
	}

	var dataDir string
	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// Chromium's sandbox refuses to run as root (tests in containers
		// and CI often do), and there is no unprivileged user to drop to;
		// elsewhere the sandbox stays on. Setting the flag either way also
		// keeps chromedp from deciding it on its own.
		chromedp.Flag("no-sandbox", os.Geteuid() == 0),
		// The browser talks only to servers the test runs; a proxy from the
		// environment must not get in between.
		chromedp.Flag("no-proxy-server", true),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			// chromedp makes the profile directory and removes it when the
			// browser exits, first killing any child process still using
			// it; note where it is, so Close can tell it is gone.
			for _, arg := range cmd.Args {
				if dir, ok := strings.CutPrefix(arg, "--user-data-dir="); ok {
					dataDir = dir
				}
			}
			// What chromedp does when not given this func: the browser
			// dies with the test binary. (Debian's chromium-headless-shell
			// is a shell script that runs the real binary without exec; that
			// one exits when its DevTools pipe to us closes.)
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		}),
	)
	if len(spki) > 0 {
		// Chromium treats a certificate chain holding one of these keys as
		// valid (it honours the list only with --user-data-dir, which
		// chromedp always sets).
		allocOpts = append(allocOpts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(ctx), allocOpts...)
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "chromedp: "+format+"\n", args...) }
	bctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))

	// The browser lives as long as the context of its first action, bctx;
	// ctx only bounds the start.
	stop := context.AfterFunc(ctx, cancel)
	err = chromedp.Do(bctx)
	if !stop() && err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		cancel()
		cancelAlloc()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return &Browser{
		ctx:         bctx,
		cancel:      cancel,
		cancelAlloc: cancelAlloc,
		log:         logw,
		proc:        chromedp.FromContext(bctx).Browser.Process(),
		dataDir:     dataDir,
	}, nil
}

// NewTab opens a tab and returns the chromedp context to run actions in it.
// The tab closes when cancel is called, when ctx ends or when the browser
// closes. Actions may run under contexts derived from the tab's, with their
// own timeouts. If the tab cannot open, the returned context is already
// canceled with the reason as its cause (context.Cause). NewTab must not be
// called concurrently with or after Close.
func (b *Browser) NewTab(ctx context.Context) (context.Context, context.CancelFunc) {
	tab, cancelTab := chromedp.NewContext(b.ctx)
	stop := context.AfterFunc(ctx, cancelTab)
	// Open the tab now: chromedp ties a tab to the context of its first
	// action, which would otherwise be whatever shorter-lived context the
	// caller happens to use first.
	if err := chromedp.Do(tab); err != nil {
		failed, fail := context.WithCancelCause(tab)
		fail(fmt.Errorf("open tab: %w", err))
		fmt.Fprintf(b.log, "browser: open tab: %v\n", err)
		stop()
		cancelTab()
		return failed, cancelTab
	}

	messages := chromedp.Console(tab)
	done := make(chan struct{})
	b.tabs.Add(1)
	go func() { // ends with the tab's context
		defer b.tabs.Done()
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			fmt.Fprintf(b.log, "console %s\n", m)
		}
	}()
	return tab, func() {
		stop()
		cancelTab()
		<-done
	}
}

// Close closes every tab and stops the browser, giving it a few seconds to
// exit by itself before killing it, and returns once the process and its
// children are gone and the profile directory is removed. Problems go to
// Options.Log. Close is idempotent.
func (b *Browser) Close() {
	b.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(b.ctx, closeGrace)
		err := chromedp.Cancel(ctx)
		cancel()
		b.cancel()
		b.cancelAlloc()
		b.tabs.Wait()
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(b.log, "browser: close: %v\n", err)
		}
	})
}

// FindChromium returns the path of the browser to run:
// $TETHER_CHROMIUM if set, else the first of chromium-headless-shell,
// chromium and google-chrome on PATH. Other harnesses that start Chromium
// themselves (test/playwright) use it too, so one variable picks the
// browser for every test.
func FindChromium() (string, error) {
	if name := os.Getenv(chromiumEnv); name != "" {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", chromiumEnv, name, err)
		}
		return path, nil
	}
	for _, name := range []string{"chromium-headless-shell", "chromium", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("no Chromium on PATH (chromium-headless-shell, chromium or google-chrome): " +
		"install the Debian package chromium-headless-shell (hack/deps.sh does), or set " + chromiumEnv + " to a Chromium binary")
}

// SPKIHashes returns, for each certificate in pemData, the base64 SHA-256
// of its SubjectPublicKeyInfo: the form --ignore-certificate-errors-spki-list
// takes. A block that is not a certificate, or trailing data that is not
// PEM, is an error, so a wrong file does not silently pin nothing.
func SPKIHashes(pemData []byte) ([]string, error) {
	var hashes []string
	rest := pemData
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("TrustPEM: block %d is %q, want CERTIFICATE", len(hashes)+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("TrustPEM: certificate %d: %w", len(hashes)+1, err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		hashes = append(hashes, base64.StdEncoding.EncodeToString(sum[:]))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("TrustPEM: data after certificate %d is not PEM", len(hashes))
	}
	return hashes, nil
}

// lockedWriter serializes writes to w, which need not be safe for
// concurrent use.
type lockedWriter struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
