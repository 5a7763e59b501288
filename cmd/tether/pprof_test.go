package main

import (
	"strings"
	"testing"
)

// TestPprofLoopbackOnly: profiles show memory contents, so only a
// loopback address is accepted.
func TestPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", ":6060", "192.0.2.1:6060", "example.com:6060", "6060"} {
		t.Setenv(debugPprofEnv, addr)
		if err := servePprof(); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s=%s: %v, want a refusal naming loopback", debugPprofEnv, addr, err)
		}
	}
	t.Setenv(debugPprofEnv, "")
	if err := servePprof(); err != nil {
		t.Errorf("unset: %v", err)
	}
}
