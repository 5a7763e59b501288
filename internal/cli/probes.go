package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
)

// The probe and metrics ports take controller-runtime's flag names, which
// operators of Kubernetes controllers know: --health-probe-bind-address
// (/livez, /readyz) and --metrics-bind-address (/metrics), both plain
// HTTP, "0" (or empty) for off. The same address for both serves all three
// on one port.

// bindOff reports whether addr turns a listener off.
func bindOff(addr string) bool { return addr == "" || addr == "0" }

// listenAddr listens on addr for flag, or returns nil when addr is off.
// When addr is a default (not explicit) and taken (a second agent on one
// host), it listens on a free port of the same host instead and says so;
// an explicit address must be free.
func listenAddr(flag, addr string, explicit bool, logger *slog.Logger) (net.Listener, error) {
	if bindOff(addr) {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil && !explicit && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		if l, err = net.Listen("tcp", net.JoinHostPort(host, "0")); err == nil {
			logger.Warn("address in use; listening on a free port instead", "flag", flag, "wanted", addr, "addr", l.Addr().String())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return l, nil
}

// bindFlag is one of the address flags: its value and whether it was
// given.
type bindFlag struct {
	addr     string
	explicit bool
}

// listenProbes opens the probe and the metrics listeners (nil when off);
// the same address gives the same listener for both.
func listenProbes(probes, metrics bindFlag, logger *slog.Logger) (probeL, metricsL net.Listener, err error) {
	if !bindOff(probes.addr) && probes.addr == metrics.addr {
		l, err := listenAddr("--health-probe-bind-address", probes.addr, probes.explicit || metrics.explicit, logger)
		return l, l, err
	}
	if probeL, err = listenAddr("--health-probe-bind-address", probes.addr, probes.explicit, logger); err != nil {
		return nil, nil, err
	}
	if metricsL, err = listenAddr("--metrics-bind-address", metrics.addr, metrics.explicit, logger); err != nil {
		if probeL != nil {
			probeL.Close()
		}
		return nil, nil, err
	}
	return probeL, metricsL, nil
}

// closeListeners closes those of ls that are not nil, each once.
func closeListeners(ls ...net.Listener) {
	seen := map[net.Listener]bool{}
	for _, l := range ls {
		if l != nil && !seen[l] {
			seen[l] = true
			l.Close()
		}
	}
}
