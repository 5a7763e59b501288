package rig

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a program the tests run in the background: in its own process
// group (so stopping it stops its children), killed if the test binary dies
// first, with its output in a log file.
type Process struct {
	// Name names the process in errors.
	Name string
	// LogPath holds its stdout and stderr; empty if the caller set them.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and err is set
	err  error
}

// StartProcess starts cmd. With a logPath, its output is appended there;
// without, cmd's own Stdout and Stderr are kept.
func StartProcess(name, logPath string, cmd *exec.Cmd) (*Process, error) {
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child holds its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process exited; valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Pid is the process ID (and its process group's).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends sig to the process group and waits; after grace it sends
// SIGKILL and reports that it had to. Stragglers left in the group after
// the leader exited are killed too. Calling it on an exited process is fine.
func (p *Process) Stop(sig syscall.Signal, grace time.Duration) error {
	pgid := -p.cmd.Process.Pid
	select {
	case <-p.done:
		syscall.Kill(pgid, syscall.SIGKILL)
		return nil
	default:
	}
	syscall.Kill(pgid, sig)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		syscall.Kill(pgid, syscall.SIGKILL)
		return nil
	case <-timer.C:
	}
	syscall.Kill(pgid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not stop within %s of %s and was killed", p.Name, grace, sig)
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	if p.LogPath == "" {
		return ""
	}
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
