package procpods

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"
)

// lookPath finds the executable name: a path with a slash is taken as is
// (relative to dir), a bare name is looked up in the PATH of env.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		if err := isExecutable(path); err != nil {
			return "", fmt.Errorf("command %q: %w", name, err)
		}
		return path, nil
	}
	search := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			search = v
		}
	}
	for _, d := range filepath.SplitList(search) {
		if d == "" || !filepath.IsAbs(d) {
			continue
		}
		path := filepath.Join(d, name)
		if isExecutable(path) == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("command %q: not found in PATH %s", name, search)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// procSpec says how to start a container's main process.
type procSpec struct {
	path  string
	argv  []string
	dir   string
	env   []string
	tty   bool // run on a pseudo-terminal
	stdin bool // keep a stdin pipe open for attach
}

// run is one process of a container: its output goes to the run's log.
type run struct {
	env    []string // environment of the container's processes
	log    *logFile
	pgid   int
	tty    *os.File      // pty master for a TTY container, else nil
	exited chan struct{} // closed once the process exited and its output is drained
	cmd    *exec.Cmd
	pumps  sync.WaitGroup
	outs   []*os.File // read ends of the output, closed after the drain
	result exitInfo   // set before exited is closed

	stdinMu sync.Mutex     // guards stdin; held while writing to it
	stdin   io.WriteCloser // the process's stdin for attach, nil if none or closed
}

// exitInfo is how a process ended.
type exitInfo struct {
	code   int32 // exit status, or 128 + signal
	signal int32
}

// startProcess starts the process of spec in its own process group (a new
// session for a TTY), writing its output to lf.
func startProcess(spec procSpec, lf *logFile) (*run, error) {
	cmd := &exec.Cmd{Path: spec.path, Args: spec.argv, Dir: spec.dir, Env: spec.env}
	r := &run{env: spec.env, log: lf, exited: make(chan struct{}), cmd: cmd}
	var child []*os.File // the child's ends, closed once it started
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	type output struct {
		f      *os.File
		stream string
	}
	var outputs []output

	if spec.tty {
		master, slave, err := openPTY()
		if err != nil {
			return nil, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
		child = append(child, slave)
		r.tty = master
		outputs = append(outputs, output{master, streamStdout})
		if spec.stdin {
			r.stdin = nopWriteCloser{master}
		}
	} else {
		if spec.stdin {
			rd, wr, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			cmd.Stdin = rd
			child = append(child, rd)
			r.stdin = wr
		}
		for _, stream := range []string{streamStdout, streamStderr} {
			rd, wr, err := os.Pipe()
			if err != nil {
				closeAll(child)
				for _, o := range outputs {
					_ = o.f.Close()
				}
				return nil, err
			}
			child = append(child, wr)
			outputs = append(outputs, output{rd, stream})
		}
		cmd.Stdout, cmd.Stderr = child[len(child)-2], child[len(child)-1]
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}

	err := cmd.Start()
	closeAll(child)
	if err != nil {
		for _, o := range outputs {
			_ = o.f.Close()
		}
		if r.stdin != nil && !spec.tty {
			_ = r.stdin.Close()
		}
		return nil, err
	}
	r.pgid = cmd.Process.Pid
	for _, o := range outputs {
		r.outs = append(r.outs, o.f)
		r.pumps.Go(func() { pump(o.f, o.stream, lf) })
	}
	return r, nil
}

// pump copies a process's output to its log until EOF or the file closes.
func pump(f *os.File, stream string, lf *logFile) {
	buf := make([]byte, 32*1024)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			lf.write(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// wait waits for the process to exit, kills what is left of its process
// group, drains its output (for at most drain: processes that escaped the
// group may hold the pipes) and closes the log.
func (r *run) wait(clk clock.Clock, drain time.Duration) exitInfo {
	_ = r.cmd.Wait()
	_ = syscall.Kill(-r.pgid, syscall.SIGKILL)
	r.drain(clk, drain)
	r.closeStdin()
	r.log.close()
	r.result = exitStatus(r.cmd.ProcessState)
	close(r.exited)
	return r.result
}

// drain waits for the pumps, closing the output files after the timeout to
// end them.
func (r *run) drain(clk clock.Clock, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		r.pumps.Wait()
		close(done)
	}()
	timer := clk.NewTimer(timeout)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C():
	}
	for _, f := range r.outs {
		_ = f.Close()
	}
	<-done
}

func (r *run) hasExited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// writeStdin writes p to the process's stdin.
func (r *run) writeStdin(p []byte) (int, error) {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin == nil {
		return 0, io.ErrClosedPipe
	}
	return r.stdin.Write(p)
}

func (r *run) closeStdin() {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	if r.stdin != nil {
		_ = r.stdin.Close()
		r.stdin = nil
	}
}

func exitStatus(ps *os.ProcessState) exitInfo {
	if ps == nil {
		return exitInfo{code: 128}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitInfo{code: 128 + int32(ws.Signal()), signal: int32(ws.Signal())}
	}
	return exitInfo{code: int32(ps.ExitCode())}
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// openPTY opens a pseudo-terminal. The master is switched to non-blocking
// mode so that closing it interrupts a pending Read (pty.Open leaves it
// blocking).
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	_ = m.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		_ = s.Close()
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), s, nil
}

// setWinsize sets the terminal size of a pty master without switching it to
// blocking mode (as File.Fd would).
func setWinsize(master *os.File, cols, rows uint16) error {
	sc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	err = sc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	return errors.Join(err, ioctlErr)
}
