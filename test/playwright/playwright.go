// Package playwright runs the real-browser tests of the hub's web pages:
// Node scripts in this directory that drive the system's headless Chromium
// with playwright-core (no browser download: the Chromium that test/browser
// uses, from Debian's chromium-headless-shell).
//
//	test (Go) ── Run ──► node SCRIPT.mjs ──► chromium-headless-shell ──► hub (https, its
//	    ▲   │  stdin: setup, barrier answers      (Playwright's own           certificate pinned
//	    │   ▼                                     temporary profile)          by public key)
//	    └── stdout: {"barrier": NAME} lines, then one {"result": ...} line;
//	        stderr: progress and the page's console ──► Options.Log
//
// playwright-core is installed from package-lock.json by npm ci at test time
// (test/npmdeps). The browser accepts exactly the certificates in
// Options.TrustPEM, pinned by their public key; it never ignores
// certificate errors wholesale. The runtime the scripts share, and the
// protocol, are in harness.mjs.
package playwright

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/test/browser"
	"tether.dev/tether/test/npmdeps"
)

// stopGrace is how long a script has to close its browser after SIGTERM
// (Playwright closes it on that signal) before it is killed.
const stopGrace = 10 * time.Second

// Options configure Run.
type Options struct {
	// Script is the file name of the script in this directory, e.g.
	// "console.spec.mjs". Required.
	Script string
	// Params are the script's own parameters, marshalled to JSON. They go
	// over stdin, so passwords in them are not on any command line.
	Params any
	// TrustPEM holds PEM certificates the browser must accept, such as the
	// hub's self-signed certificate; each is pinned by its public key.
	// Empty: only the system's roots.
	TrustPEM []byte
	// Screenshots is the directory the script saves its PNGs in; it is
	// created. Required.
	Screenshots string
	// Log receives the script's progress and the page's console, a line
	// per write. Nil: discarded.
	Log io.Writer
	// Barrier is called when the script reaches a named barrier and waits
	// for the Go side (e.g. "agent stopped"); the script goes on when it
	// returns nil and fails with its error otherwise. Nil: every barrier
	// fails.
	Barrier func(ctx context.Context, name string) error
}

// Step is one step the script ran.
type Step struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Screenshot is the PNG saved after the step (after a failed one, if
	// the page could still be captured).
	Screenshot string `json:"screenshot"`
	// Error says why the step failed.
	Error string `json:"error,omitempty"`
	// MS is the step's duration in milliseconds, for the log only.
	MS int64 `json:"ms"`
}

// Result is what the script reported.
type Result struct {
	OK    bool   `json:"ok"`
	Steps []Step `json:"steps"`
	// Error is the first failure: the step, the page's URL and what was
	// wrong.
	Error string `json:"error"`
	// Data holds what the script found for the Go side to check further.
	Data map[string]json.RawMessage `json:"data"`
}

// Dir is this package's directory, where the scripts and package.json are.
func Dir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("playwright: cannot find the package's source directory")
	}
	return filepath.Dir(file), nil
}

// Run installs playwright-core if needed, starts node on opts.Script and
// feeds it the setup, answers its barriers, and returns its result. The
// error is non-nil when the script could not run or report; a script that
// ran and failed a step returns a Result with OK false and no error. ctx
// bounds the whole run: when it ends the script is stopped (SIGTERM, on
// which Playwright closes the browser) and Run returns ctx's cause.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Script == "" || opts.Screenshots == "" {
		return nil, errors.New("playwright: Options.Script and Options.Screenshots are required")
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	if err := npmdeps.Ensure(ctx, dir, "playwright", opts.Log); err != nil {
		return nil, err
	}
	chromium, err := browser.FindChromium()
	if err != nil {
		return nil, err
	}
	pins, err := browser.SPKIHashes(opts.TrustPEM)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Screenshots, 0o755); err != nil {
		return nil, err
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	// --no-proxy-server: the browser talks only to servers the test runs; a
	// proxy from the environment must not get in between. Playwright
	// launches Chromium with a profile of its own (--user-data-dir), which
	// the SPKI list needs.
	args := []string{"--no-proxy-server"}
	if len(pins) > 0 {
		args = append(args, "--ignore-certificate-errors-spki-list="+strings.Join(pins, ","))
	}
	params := opts.Params
	if params == nil {
		params = struct{}{}
	}
	// Chromium's sandbox refuses to run as root (tests in containers and CI
	// often do); elsewhere it stays on, as in test/browser.
	sandbox := os.Geteuid() != 0
	setup, err := json.Marshal(map[string]any{"chromium": chromium, "args": args, "sandbox": sandbox, "screenshots": opts.Screenshots, "params": params})
	if err != nil {
		return nil, fmt.Errorf("playwright: params: %w", err)
	}

	cmd := exec.CommandContext(ctx, "node", opts.Script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1", "NO_COLOR=1", "FORCE_COLOR=0")
	lw := &lineWriter{w: logw}
	defer lw.flush()
	cmd.Stderr = lw
	// On ctx's end, let Playwright close the browser (it does on SIGTERM);
	// kill after a grace period. The script dies with the test binary.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s (Node.js >= 20 must be on PATH): %w", opts.Script, err)
	}
	res, talkErr := talk(ctx, opts, stdin, stdout, setup)
	stdin.Close()
	if talkErr != nil {
		// The script may be waiting on stdin or still printing: stop it as
		// ctx's end would, and read what it prints until it exits.
		cmd.Process.Signal(syscall.SIGTERM)
		kill := time.AfterFunc(stopGrace, func() { cmd.Process.Kill() })
		io.Copy(io.Discard, stdout)
		kill.Stop()
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		// Stopped: whatever it reported is about being stopped.
		return nil, fmt.Errorf("node %s stopped: %w", opts.Script, context.Cause(ctx))
	case talkErr != nil:
		return nil, fmt.Errorf("node %s: %w (exit: %v)", opts.Script, talkErr, waitErr)
	case res == nil:
		return nil, fmt.Errorf("node %s ended without a result (%v); its log says why", opts.Script, waitErr)
	case res.OK && waitErr != nil:
		return nil, fmt.Errorf("node %s reported success but exited with %v", opts.Script, waitErr)
	case !res.OK && waitErr == nil:
		return nil, fmt.Errorf("node %s reported a failure but exited 0: %s", opts.Script, res.Error)
	}
	return res, nil
}

// talk sends the setup and reads the script's stdout until its result or
// EOF, answering barriers on the way. It runs in Run's goroutine; the
// script's stdout is read to its end.
func talk(ctx context.Context, opts Options, stdin io.Writer, stdout io.Reader, setup []byte) (*Result, error) {
	if _, err := stdin.Write(append(setup, '\n')); err != nil {
		return nil, fmt.Errorf("send the setup: %w", err)
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var res *Result
	for sc.Scan() {
		var msg struct {
			Barrier *string `json:"barrier"`
			Result  *Result `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &msg); err != nil {
			return nil, fmt.Errorf("a line of output that is not the protocol's JSON: %.200q", sc.Text())
		}
		switch {
		case msg.Result != nil:
			res = msg.Result
		case msg.Barrier != nil:
			answer := map[string]any{"continue": true}
			var err error
			if opts.Barrier == nil {
				err = errors.New("the Go side has no Barrier function")
			} else {
				err = opts.Barrier(ctx, *msg.Barrier)
			}
			if err != nil {
				answer = map[string]any{"abort": err.Error()}
			}
			b, _ := json.Marshal(answer)
			if _, err := stdin.Write(append(b, '\n')); err != nil {
				return nil, fmt.Errorf("answer barrier %s: %w", *msg.Barrier, err)
			}
		default:
			return nil, fmt.Errorf("a line of output that is neither a barrier nor the result: %.200q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// Failed summarizes a result that is not OK for a test's failure message:
// the error, and each step with its screenshot.
func (r *Result) Failed() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nsteps:", r.Error)
	for _, s := range r.Steps {
		mark := "ok"
		if !s.OK {
			mark = "FAILED"
		}
		fmt.Fprintf(&b, "\n  %-6s %s (%s)", mark, s.Name, s.Screenshot)
	}
	return b.String()
}

// lineWriter passes whole lines to w, one per write (a test's log shows
// each as one entry). exec's copying goroutine writes to it, and only until
// Wait returns; flush, after that, writes what is left.
type lineWriter struct {
	w   io.Writer
	buf []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.w.Write(l.buf[:i+1])
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *lineWriter) flush() {
	if len(l.buf) > 0 {
		l.w.Write(append(l.buf, '\n'))
		l.buf = nil
	}
}
