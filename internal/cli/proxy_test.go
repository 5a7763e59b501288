package cli

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestListenProxy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	t.Run("busy default port falls back to a free one", func(t *testing.T) {
		l, err := listenProxy(busyPort, false)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if got := l.Addr().(*net.TCPAddr).Port; got == busyPort {
			t.Errorf("listened on the busy port %d", got)
		}
		if host, _, _ := net.SplitHostPort(l.Addr().String()); host != "127.0.0.1" {
			t.Errorf("listening on %s, want loopback only", host)
		}
	})
	t.Run("busy explicit port is an error naming it", func(t *testing.T) {
		_, err := listenProxy(busyPort, true)
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(busyPort)) || !strings.Contains(err.Error(), "--port") {
			t.Fatalf("err = %v, want one naming port %d and --port", err, busyPort)
		}
	})
	t.Run("out of range is a usage error", func(t *testing.T) {
		_, err := listenProxy(70000, true)
		if err == nil || ExitCode(err) != 2 {
			t.Fatalf("err = %v, want a usage error", err)
		}
	})
}
