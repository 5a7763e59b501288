package procpods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	"k8s.io/utils/clock"
)

const (
	streamStdout = "stdout"
	streamStderr = "stderr"

	tagFull    = "F" // the record ends a line
	tagPartial = "P" // the line goes on in the next record of the stream

	// logTimeFormat is the CRI log timestamp: RFC 3339 with fixed-width
	// nanoseconds.
	logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"
)

// logFile is the log of one run of a container, in the CRI format: one
// record per line, "<time> <stream> <F|P> <text>".
type logFile struct {
	path  string
	clock clock.PassiveClock

	mu      sync.Mutex    // guards the fields below; held while writing
	f       *os.File      // nil once closed
	size    int64         // bytes of complete records in the file
	changed chan struct{} // closed and replaced when size grows or the log closes
}

func createLog(path string, clk clock.PassiveClock) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	return &logFile{path: path, clock: clk, f: f, changed: make(chan struct{})}, nil
}

// write appends p, output of stream, as one record per line.
func (l *logFile) write(stream string, p []byte) {
	ts := l.clock.Now().UTC().Format(logTimeFormat)
	var buf bytes.Buffer
	for len(p) > 0 {
		line, rest, full := bytes.Cut(p, []byte{'\n'})
		tag := tagPartial
		if full {
			tag = tagFull
		}
		buf.WriteString(ts + " " + stream + " " + tag + " ")
		buf.Write(line)
		buf.WriteByte('\n')
		p = rest
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	n, err := l.f.Write(buf.Bytes())
	if err != nil {
		// A short write leaves a torn record, which readers skip; later
		// records stay readable.
		n = 0
		if _, serr := l.f.Seek(l.size, io.SeekStart); serr == nil {
			_ = l.f.Truncate(l.size)
		}
	}
	l.size += int64(n)
	close(l.changed)
	l.changed = make(chan struct{})
}

// close ends the log: followers stop once they read everything.
func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	_ = l.f.Close()
	l.f = nil
	close(l.changed)
	l.changed = make(chan struct{})
}

// state returns the size of the complete records, a channel closed when
// that changes, and whether the log is closed.
func (l *logFile) state() (size int64, changed <-chan struct{}, closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, l.changed, l.f == nil
}

// logRecord is one record of a log.
type logRecord struct {
	time    time.Time
	stream  string
	partial bool
	text    []byte // without the newline; only valid during the callback
}

// errStopScan ends a scan early without error.
var errStopScan = errors.New("stop scan")

// scan calls fn for each record from byte offset from. With follow, it
// waits for more records until the log is closed or ctx is done; otherwise
// it stops at the records written so far.
func (l *logFile) scan(ctx context.Context, from int64, follow bool, fn func(logRecord) error) error {
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()

	off := from
	var pending []byte
	buf := make([]byte, 64*1024)
	for {
		size, changed, closed := l.state()
		if off < size {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if n == 0 && err != nil {
				return fmt.Errorf("read log: %w", err)
			}
			off += int64(n)
			pending = append(pending, buf[:n]...)
			for {
				line, rest, ok := bytes.Cut(pending, []byte{'\n'})
				if !ok {
					break
				}
				if rec, ok := parseRecord(line); ok {
					if err := fn(rec); err != nil {
						if errors.Is(err, errStopScan) {
							return nil
						}
						return err
					}
				}
				pending = rest
			}
			pending = append([]byte(nil), pending...)
			continue
		}
		if !follow || closed {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// parseRecord parses one line of a CRI log.
func parseRecord(line []byte) (logRecord, bool) {
	ts, rest, ok1 := bytes.Cut(line, []byte{' '})
	stream, rest, ok2 := bytes.Cut(rest, []byte{' '})
	tag, text, ok3 := bytes.Cut(rest, []byte{' '})
	if !ok1 || !ok2 || !ok3 {
		return logRecord{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return logRecord{}, false
	}
	return logRecord{time: t, stream: string(stream), partial: string(tag) == tagPartial, text: text}, true
}

// writeLogs writes the log as kubectl logs shows it, honouring the tail,
// since, limit, timestamps and follow options.
func writeLogs(ctx context.Context, l *logFile, opts api.ContainerLogOpts, now time.Time, w io.Writer) error {
	var since time.Time
	switch {
	case !opts.SinceTime.IsZero():
		since = opts.SinceTime
	case opts.SinceSeconds > 0:
		since = now.Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	keep := func(rec logRecord) bool { return since.IsZero() || !rec.time.Before(since) }

	skip := 0 // complete lines to skip for tail
	if opts.Tail > 0 {
		// A line is a run of partial records ended by a full one; an
		// unfinished last line counts too.
		lines, open := 0, false
		err := l.scan(ctx, 0, false, func(rec logRecord) error {
			if keep(rec) {
				open = rec.partial
				if !rec.partial {
					lines++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if open {
			lines++
		}
		skip = max(lines-opts.Tail, 0)
	}

	remaining := opts.LimitBytes
	out := func(p []byte) error {
		if opts.LimitBytes > 0 {
			if remaining <= 0 {
				return errStopScan
			}
			p = p[:min(len(p), remaining)]
			remaining -= len(p)
		}
		_, err := w.Write(p)
		return err
	}
	var line []byte
	return l.scan(ctx, 0, opts.Follow, func(rec logRecord) error {
		if !keep(rec) {
			return nil
		}
		if skip > 0 {
			if !rec.partial {
				skip--
			}
			return nil
		}
		line = line[:0]
		if opts.Timestamps {
			line = append(line, rec.time.Format(time.RFC3339Nano)...)
			line = append(line, ' ')
		}
		line = append(line, rec.text...)
		if !rec.partial {
			line = append(line, '\n')
		}
		return out(line)
	})
}

// GetContainerLogs streams a container's log: the current run's, or with
// Previous the one before.
func (p *Provider) GetContainerLogs(ctx context.Context, namespace, name, containerName string, opts api.ContainerLogOpts) (io.ReadCloser, error) {
	pd, err := p.lookup(namespace, name)
	if err != nil {
		return nil, err
	}
	c := pd.container(containerName)
	if c == nil {
		return nil, errdefs.NotFoundf("container %s is not valid for pod %s", containerName, pd.key)
	}
	pd.mu.Lock()
	r := c.cur
	if opts.Previous {
		r = c.prev
	}
	pd.mu.Unlock()
	switch {
	case r == nil && opts.Previous:
		return nil, errdefs.InvalidInputf("previous terminated container %q in pod %q not found", containerName, pd.key)
	case r == nil:
		return nil, errdefs.InvalidInputf("container %q in pod %q is waiting to start", containerName, pd.key)
	}

	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	now := p.clock.Now()
	if !p.spawn(func() { _ = pw.CloseWithError(writeLogs(ctx, r.log, opts, now, pw)) }) {
		cancel()
		return nil, errors.New("node is shutting down")
	}
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

// logReader is the reading end of a log stream; closing it stops the
// writer.
type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *logReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}
