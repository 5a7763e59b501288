package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// debugPprofEnv names a loopback address (127.0.0.1:6060) where any tether
// command serves Go's profiles (/debug/pprof/), for diagnosing performance
// (docs/performance.md). Profiles reveal memory contents: only loopback
// addresses are accepted.
const debugPprofEnv = "TETHER_DEBUG_PPROF"

// servePprof starts the profile server if debugPprofEnv is set.
func servePprof() error {
	addr := os.Getenv(debugPprofEnv)
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s=%q: give a loopback address and port, e.g. 127.0.0.1:6060", debugPprofEnv, addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", debugPprofEnv, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(l, mux) //nolint:errcheck // lives as long as the process
	return nil
}
