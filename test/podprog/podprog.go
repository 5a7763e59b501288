// Package podprog holds the small programs that test pods and test clients
// run. The rig's pods run commands as local processes, so a test binary
// runs itself as the pod's program: its TestMain calls Main first, which
// runs the program named by $TETHER_TEST_PROG and exits, or returns at once
// when the variable is unset.
package podprog

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"time"
)

// Env names the program to run; Port, Addr and Bytes are its arguments.
const (
	Env   = "TETHER_TEST_PROG"
	Port  = "TETHER_TEST_PORT"
	Addr  = "TETHER_TEST_ADDR"
	Bytes = "TETHER_TEST_BYTES"
)

// The programs.
const (
	// EchoServer listens on 127.0.0.1:$PORT, prints "listening on ADDR"
	// and echoes every connection back until the peer half-closes.
	EchoServer = "echo-server"
	// EchoClient sends $BYTES pseudo-random bytes to $ADDR, reads the echo,
	// checks it, and prints "ok SECONDS" (exit 0) or what went wrong (exit 1).
	EchoClient = "echo-client"
)

// Main runs the program named by $TETHER_TEST_PROG and exits; it returns
// only when the variable is unset.
func Main() {
	switch os.Getenv(Env) {
	case "":
		return
	case EchoServer:
		os.Exit(echoServer(os.Getenv(Port)))
	case EchoClient:
		os.Exit(echoClient(os.Getenv(Addr), os.Getenv(Bytes)))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", Env, os.Getenv(Env))
		os.Exit(2)
	}
}

// EchoClientEnv is the environment of an EchoClient run.
func EchoClientEnv(addr string, n int) []string {
	return []string{Env + "=" + EchoClient, Addr + "=" + addr, Bytes + "=" + strconv.Itoa(n)}
}

func echoServer(port string) int {
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening on", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

func echoClient(addr, n string) int {
	size, err := strconv.Atoi(n)
	if err != nil || size < 0 {
		fmt.Printf("bad %s %q\n", Bytes, n)
		return 1
	}
	payload := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(payload)
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		fmt.Println("read:", err, len(got))
		return 1
	}
	if err := <-werr; err != nil {
		fmt.Println("write:", err)
		return 1
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		fmt.Printf("corrupt: got %d bytes, sent %d\n", len(got), len(payload))
		return 1
	}
	fmt.Printf("ok %.6f\n", time.Since(start).Seconds())
	return 0
}
