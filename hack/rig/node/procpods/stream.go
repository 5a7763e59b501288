package procpods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	utilexec "k8s.io/utils/exec"
)

// runningContainer returns the pod, the container and its current run, which
// must be running.
func (p *Provider) runningContainer(namespace, name, containerName string) (*pod, *container, *run, error) {
	pd, err := p.lookup(namespace, name)
	if err != nil {
		return nil, nil, nil, err
	}
	c := pd.container(containerName)
	if c == nil {
		return nil, nil, nil, errdefs.NotFoundf("container %s is not valid for pod %s", containerName, pd.key)
	}
	pd.mu.Lock()
	defer pd.mu.Unlock()
	if c.state.Running == nil || c.cur == nil || pd.terminating {
		return nil, nil, nil, errdefs.InvalidInputf("container %s in pod %s is not running", containerName, pd.key)
	}
	return pd, c, c.cur, nil
}

// RunInContainer runs cmd in the container's directory with its
// environment, joined to the container's process group (a new session for a
// TTY), and returns its exit code as a utilexec.ExitError.
func (p *Provider) RunInContainer(ctx context.Context, namespace, name, containerName string, cmd []string, attach api.AttachIO) error {
	pd, c, r, err := p.runningContainer(namespace, name, containerName)
	if err != nil {
		return err
	}
	if len(cmd) == 0 {
		return errdefs.InvalidInput("no command given")
	}
	path, err := lookPath(cmd[0], r.env, c.dir)
	if err != nil {
		return errdefs.AsInvalidInput(err)
	}
	command := &exec.Cmd{Path: path, Args: cmd, Dir: c.dir, Env: r.env}
	if attach.TTY() {
		return p.execTTY(ctx, pd, command, attach)
	}
	return p.execPipes(ctx, pd, r, command, attach)
}

// execPipes runs command with pipes for its standard streams.
func (p *Provider) execPipes(ctx context.Context, pd *pod, r *run, command *exec.Cmd, attach api.AttachIO) error {
	var child, parent []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	pipe := func() (rd, wr *os.File, err error) {
		rd, wr, err = os.Pipe()
		if err != nil {
			closeAll(child)
			closeAll(parent)
		}
		return rd, wr, err
	}
	var stdinW *os.File
	if attach.Stdin() != nil {
		rd, wr, err := pipe()
		if err != nil {
			return err
		}
		command.Stdin, stdinW = rd, wr
		child, parent = append(child, rd), append(parent, wr)
	}
	type output struct {
		rd *os.File
		w  io.Writer
	}
	var outputs []output
	var readEnds []*os.File
	for i, w := range []io.WriteCloser{attach.Stdout(), attach.Stderr()} {
		if w == nil {
			continue
		}
		rd, wr, err := pipe()
		if err != nil {
			return err
		}
		child, parent = append(child, wr), append(parent, rd)
		outputs = append(outputs, output{rd, w})
		readEnds = append(readEnds, rd)
		if i == 0 {
			command.Stdout = wr
		} else {
			command.Stderr = wr
		}
	}

	pd.mu.Lock()
	if pd.terminating || r.hasExited() {
		pd.mu.Unlock()
		closeAll(child)
		closeAll(parent)
		return errors.New("container is not running")
	}
	command.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: r.pgid, Pdeathsig: syscall.SIGKILL}
	err := command.Start()
	pd.mu.Unlock()
	closeAll(child)
	if err != nil {
		closeAll(parent)
		return fmt.Errorf("start %s: %w", command.Path, err)
	}

	if stdinW != nil {
		in := attach.Stdin()
		// The stdin copy ends when the client's stream ends, which may be
		// only after this call returns; Close waits for it.
		if !p.spawn(func() {
			_, _ = io.Copy(stdinW, in)
			_ = stdinW.Close()
		}) {
			_ = stdinW.Close()
		}
	}
	var pumps sync.WaitGroup
	for _, o := range outputs {
		pumps.Go(func() { _, _ = io.Copy(o.w, o.rd) })
	}
	stopKill := context.AfterFunc(ctx, func() { _ = command.Process.Kill() })
	_ = command.Wait()
	stopKill()
	drainFiles(p, &pumps, readEnds)
	return exitError(exitStatus(command.ProcessState))
}

// drainFiles waits for the copies to end, closing files after the drain
// timeout to end them.
func drainFiles(p *Provider, pumps *sync.WaitGroup, files []*os.File) {
	done := make(chan struct{})
	go func() {
		pumps.Wait()
		close(done)
	}()
	timer := p.clock.NewTimer(p.cfg.DrainTimeout)
	select {
	case <-done:
		timer.Stop()
	case <-timer.C():
	}
	for _, f := range files {
		_ = f.Close()
	}
	<-done
}

// execTTY runs command on a new pseudo-terminal, in a new session.
func (p *Provider) execTTY(ctx context.Context, pd *pod, command *exec.Cmd, attach api.AttachIO) error {
	master, slave, err := openPTY()
	if err != nil {
		return err
	}
	command.Stdin, command.Stdout, command.Stderr = slave, slave, slave
	command.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	command.Env = append(append([]string(nil), command.Env...), "TERM=xterm")

	pd.mu.Lock()
	if pd.terminating {
		pd.mu.Unlock()
		_ = slave.Close()
		_ = master.Close()
		return errors.New("container is not running")
	}
	err = command.Start()
	if err == nil {
		pd.sessions[command.Process.Pid] = struct{}{}
	}
	pd.mu.Unlock()
	_ = slave.Close()
	if err != nil {
		_ = master.Close()
		return fmt.Errorf("start %s: %w", command.Path, err)
	}
	pid := command.Process.Pid

	done := make(chan struct{})
	var pumps, helpers sync.WaitGroup
	if resize := attach.Resize(); resize != nil {
		helpers.Go(func() { applyResizes(master, resize, done) })
	}
	if in := attach.Stdin(); in != nil {
		p.spawn(func() { _, _ = io.Copy(master, in) })
	}
	if out := attach.Stdout(); out != nil {
		pumps.Go(func() { _, _ = io.Copy(out, master) })
	}
	stopKill := context.AfterFunc(ctx, func() { _ = command.Process.Kill() })
	_ = command.Wait()
	stopKill()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	pd.mu.Lock()
	delete(pd.sessions, pid)
	pd.mu.Unlock()
	drainFiles(p, &pumps, []*os.File{master})
	close(done)
	helpers.Wait()
	return exitError(exitStatus(command.ProcessState))
}

// applyResizes sets the terminal size from resize events until done. A
// zero size means the client's resize stream ended (virtual-kubelet then
// sends zero sizes until the call returns), so it stops reading.
func applyResizes(master *os.File, resize <-chan api.TermSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case size := <-resize:
			if size.Width == 0 && size.Height == 0 {
				<-done
				return
			}
			_ = setWinsize(master, size.Width, size.Height)
		}
	}
}

// exitError turns an exit status into the error the streaming code reports
// as the command's exit code.
func exitError(exit exitInfo) error {
	if exit.code == 0 {
		return nil
	}
	return utilexec.CodeExitError{
		Err:  fmt.Errorf("exit status %d", exit.code),
		Code: int(exit.code),
	}
}

// AttachToContainer streams the output of the container's main process from
// now on until it exits, and forwards stdin to it if the container has
// stdin: true.
func (p *Provider) AttachToContainer(ctx context.Context, namespace, name, containerName string, attach api.AttachIO) error {
	_, c, r, err := p.runningContainer(namespace, name, containerName)
	if err != nil {
		return err
	}
	from, _, _ := r.log.state()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var helpers sync.WaitGroup
	if resize := attach.Resize(); resize != nil && r.tty != nil {
		helpers.Go(func() { applyResizes(r.tty, resize, ctx.Done()) })
	}
	if in := attach.Stdin(); in != nil && c.spec.Stdin {
		stdinOnce := c.spec.StdinOnce
		p.spawn(func() {
			_, _ = io.Copy(writerFunc(r.writeStdin), in)
			if stdinOnce {
				r.closeStdin()
			}
		})
	}

	stdout, stderr := attach.Stdout(), attach.Stderr()
	var line []byte
	err = r.log.scan(ctx, from, true, func(rec logRecord) error {
		var w io.Writer
		switch {
		case rec.stream == streamStderr && stderr != nil:
			w = stderr
		case rec.stream != streamStderr && stdout != nil:
			w = stdout
		default:
			return nil
		}
		line = append(line[:0], rec.text...)
		if !rec.partial {
			line = append(line, '\n')
		}
		_, err := w.Write(line)
		return err
	})
	cancel()
	helpers.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// PortForward connects stream to the pod's port on 127.0.0.1 (the pods share
// the host's network), or on the node IP if loopback refuses, and copies
// both ways, passing on half-closes.
func (p *Provider) PortForward(ctx context.Context, namespace, name string, port int32, stream io.ReadWriteCloser) error {
	pd, err := p.lookup(namespace, name)
	if err != nil {
		return err
	}
	if port <= 0 || port > 65535 {
		return errdefs.InvalidInputf("invalid port %d", port)
	}
	dialer := net.Dialer{Timeout: p.cfg.DialTimeout}
	addrs := []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	if !p.cfg.NodeIP.IsLoopback() {
		addrs = append(addrs, p.cfg.NodeIP)
	}
	var conn net.Conn
	for _, a := range addrs {
		conn, err = dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("pod %s port %d: %w", pd.key, port, err)
	}
	return splice(conn.(*net.TCPConn), stream)
}

// splice copies between conn and stream until both directions ended. EOF
// from the client half-closes conn; EOF from conn closes the stream (a
// half-close for SPDY streams). An error in one direction closes conn, which
// ends the other.
func splice(conn *net.TCPConn, stream io.ReadWriteCloser) error {
	defer conn.Close()
	toConn := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if err == nil {
			err = conn.CloseWrite()
		} else {
			_ = conn.Close()
		}
		toConn <- err
	}()
	_, err := io.Copy(stream, conn)
	if err != nil {
		_ = conn.Close()
	}
	_ = stream.Close()
	return errors.Join(err, <-toConn)
}

// GetStatsSummary returns a summary naming the node and its pods, without
// usage figures.
func (p *Provider) GetStatsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	pods, _ := p.GetPods(ctx)
	now := metav1.NewTime(p.clock.Now())
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{NodeName: p.cfg.NodeName, StartTime: now}}
	for _, pod := range pods {
		sum.Pods = append(sum.Pods, statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID)},
			StartTime: *pod.Status.StartTime,
		})
	}
	return sum, nil
}

// GetMetricsResource returns no metrics: the node does not measure usage.
func (p *Provider) GetMetricsResource(context.Context) ([]*dto.MetricFamily, error) {
	return nil, nil
}
