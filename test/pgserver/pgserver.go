// Package pgserver runs a real PostgreSQL server for tests: initdb in a new
// temporary directory (trust authentication, durability off for speed), then
// postgres on a free loopback TCP port, with its Unix socket and its log in
// that directory.
//
//	test binary ──TCP 127.0.0.1:port──► postgres (as the postgres user when
//	                                     the tests run as root; killed if the
//	                                     test binary dies first)
//
// One server serves many tests: NewDatabase gives each its own empty
// database. Start ties a server to a test; Launch and Close are for a
// TestMain or a sync.Once that shares one across a package. Stop and Restart
// take the server down and up again on the same port and data, to test an
// outage.
//
// The server binaries are found on PATH or in /usr/lib/postgresql/*/bin
// (Debian's layout, the package postgresql); without them the tests fail,
// naming that package.
package pgserver

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// readyTimeout bounds the wait for a started server to accept
	// connections.
	readyTimeout = 30 * time.Second
	// stopTimeout bounds a fast shutdown; then the server is killed.
	stopTimeout = 30 * time.Second
	// adminTimeout bounds CREATE and DROP DATABASE.
	adminTimeout = 30 * time.Second
	// Superuser is the server's superuser, with which every DSN connects.
	Superuser = "postgres"
	// debianPackage provides the server binaries.
	debianPackage = "postgresql"
)

// Server is a PostgreSQL server in a temporary directory. Its methods are
// safe for concurrent use.
type Server struct {
	// bin is the directory of initdb and postgres.
	bin string
	// dir holds data/ (the cluster), the Unix socket and postgres.log;
	// removed by Close.
	dir  string
	port int
	// cred runs the server as the postgres user; nil unless the tests run
	// as root.
	cred *syscall.Credential
	// dbs numbers the databases NewDatabase creates.
	dbs atomic.Int64

	mu sync.Mutex // guards the fields below
	// proc is the running postmaster; nil while the server is stopped.
	proc *process
	// closed is set by Close.
	closed bool
}

// process is a running postmaster.
type process struct {
	cmd *exec.Cmd
	// exited is closed when the process has exited and err is set.
	exited chan struct{}
	err    error
}

// Start runs a new server for tb's test, with an empty cluster, and stops
// it and removes its directory when the test ends. It fails the test if it
// cannot, for instance when the server binaries are not installed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+time.Minute)
	defer cancel()
	s, err := Launch(ctx)
	if err != nil {
		tb.Fatalf("pgserver: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("pgserver: %v", err)
		}
	})
	return s
}

// Launch runs a new server with an empty cluster and returns once it
// accepts connections. The caller must Close it. It is Start for callers
// without a testing.TB, such as a TestMain.
func Launch(ctx context.Context) (*Server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgserver-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, cred: cred}
	if err := s.launch(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// launch makes the cluster and starts the server on a free port.
func (s *Server) launch(ctx context.Context) error {
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return err
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(s.bin, "initdb"),
		"--pgdata", s.dataDir(), "--username", Superuser, "--auth", "trust",
		"--encoding", "UTF8", "--no-locale", "--no-sync", "--no-instructions")
	initdb.Dir = s.dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// Another process may take the free port before postgres binds it:
	// then try another.
	var err error
	for range 3 {
		if s.port, err = freePort(); err != nil {
			return err
		}
		if err = s.start(ctx); err == nil {
			return nil
		}
	}
	return err
}

// DSN returns the URL with which the superuser connects to the database db
// over TCP.
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// NewDatabase creates an empty database with a name unique on the server
// and returns its DSN. The database is dropped when tb's test ends, if the
// server is running then.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	if err := s.admin("CREATE DATABASE " + pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgserver: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if !s.running() {
			return // Close removes everything anyway
		}
		// FORCE ends the connections a test left behind.
		if err := s.admin("DROP DATABASE " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"); err != nil {
			tb.Errorf("pgserver: drop database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// admin runs sql in the postgres database.
func (s *Server) admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, sql)
	return errors.Join(err, conn.Close(ctx))
}

// Stop shuts the server down (a fast shutdown: open connections are
// ended) and keeps its data, so that Restart brings it back. Stopping a
// stopped server does nothing.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("pgserver: %v", err)
	}
}

// Restart starts the server again on the same port and data, stopping it
// first if it runs, and returns once it accepts connections.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Fatalf("pgserver: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout+time.Minute)
	defer cancel()
	if err := s.start(ctx); err != nil {
		tb.Fatalf("pgserver: %v", err)
	}
}

// Close stops the server and removes its directory. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	err := s.stop()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil {
		err = errors.Join(err, rmErr)
	}
	return err
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logPath() string { return filepath.Join(s.dir, "postgres.log") }

// running reports whether the server runs.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// start runs postgres on s.port and waits until it accepts connections.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server is closed")
	}
	if s.proc != nil {
		return errors.New("server is already running")
	}
	logFile, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(s.bin, "postgres"),
		"-D", s.dataDir(),
		"-p", strconv.Itoa(s.port),
		"-k", s.dir,
		"-c", "listen_addresses=127.0.0.1",
		// Durability is not a test's concern; speed is.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// Parallel query needs shared memory that small containers lack.
		"-c", "max_parallel_workers_per_gather=0",
	)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// SIGQUIT is an immediate shutdown: the postmaster takes its children
	// with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { // ends when postgres exits; stop waits for it
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := s.waitReady(ctx, p); err != nil {
		_ = stopProcess(p) // the readiness error is the one to report
		return fmt.Errorf("postgres on port %d: %w\n%s", s.port, err, s.logTail(20))
	}
	s.proc = p
	return nil
}

// waitReady polls until the server accepts connections, p exits, or the
// time is up.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	const interval = 20 * time.Millisecond
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
		conn, err := pgconn.Connect(attempt, s.DSN("postgres"))
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("postgres exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections after %s: %w", readyTimeout, err)
		case <-tick.C:
		}
	}
}

// stop shuts the running server down, if any, and waits for it.
func (s *Server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := stopProcess(s.proc)
	s.proc = nil
	return err
}

// stopProcess asks the postmaster for a fast shutdown (SIGINT) and waits
// for it to exit; after stopTimeout it kills it.
func stopProcess(p *process) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop postgres: %w", err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	_ = p.cmd.Process.Kill() // it may have exited meanwhile
	<-p.exited
	return fmt.Errorf("postgres did not shut down within %s and was killed", stopTimeout)
}

// logTail returns the last n lines of the server's log.
func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath())
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// findBinaries returns the directory that holds initdb and postgres: the
// one on PATH, else the newest /usr/lib/postgresql/VERSION/bin.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("postgres"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && isExecutable(filepath.Join(filepath.Dir(real), "initdb")) {
			return filepath.Dir(real), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres") // the pattern is valid
	type found struct {
		version int
		dir     string
	}
	var dirs []found
	for _, m := range matches {
		dir := filepath.Dir(m)
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err == nil && isExecutable(m) && isExecutable(filepath.Join(dir, "initdb")) {
			dirs = append(dirs, found{v, dir})
		}
	}
	if len(dirs) == 0 {
		return "", fmt.Errorf("the PostgreSQL server (initdb and postgres) is not on PATH nor in /usr/lib/postgresql/*/bin: "+
			"install the Debian package %s (hack/deps.sh does)", debianPackage)
	}
	newest := slices.MaxFunc(dirs, func(a, b found) int { return cmp.Compare(a.version, b.version) })
	return newest.dir, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// serverCredential returns the credential that runs the server: nil to run
// it as the current user, or the postgres system user's when the current
// user is root, which postgres refuses to run as.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres refuses to run as root, and there is no postgres user to run it as "+
			"(the Debian package %s creates it): %w", debianPackage, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("postgres user: gid %q: %w", u.Gid, err)
	}
	// No supplementary groups: none of root's.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}
