package cli

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
)

func TestAgentJoinToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("tjt_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		flag      string
		flagSet   bool
		file, env string
		want      string
		wantUsage bool
	}{
		{name: "flag", flag: "tjt_flag", flagSet: true, env: "tjt_env", want: "tjt_flag"},
		{name: "file, e.g. a mounted Secret", file: file, env: "tjt_env", want: "tjt_from_file"},
		{name: "a missing file is no token", file: filepath.Join(dir, "absent"), env: "tjt_env", want: ""},
		{name: "environment", env: " tjt_env\n", want: "tjt_env"},
		{name: "none", want: ""},
		{name: "flag and file", flag: "tjt_flag", flagSet: true, file: file, wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := agentJoinToken(tt.flag, tt.flagSet, tt.file, tt.env, slog.New(slog.DiscardHandler))
			if diff := cmp.Diff(tt.wantUsage, errors.As(err, new(usageError))); diff != "" {
				t.Fatalf("usage error (-want +got):\n%s\n%v", diff, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAgentState(t *testing.T) {
	nsFile := filepath.Join(t.TempDir(), "namespace")
	if err := os.WriteFile(nsFile, []byte("tether-system"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name               string
		dir, secret        string
		inCluster          bool
		nsFile             string
		wantDir            string
		wantSecret         types.NamespacedName
		wantUsage, wantErr bool
	}{
		{name: "directory", dir: "/data/agent", inCluster: true, wantDir: "/data/agent"},
		{name: "Secret", secret: "ops/agent-state", wantSecret: types.NamespacedName{Namespace: "ops", Name: "agent-state"}},
		{name: "in a pod: the Secret in its namespace", inCluster: true, nsFile: nsFile,
			wantSecret: types.NamespacedName{Namespace: "tether-system", Name: "tether-agent-state"}},
		{name: "outside a cluster: the default directory", wantDir: "/var/lib/tether-agent"},
		{name: "in a pod without a namespace file", inCluster: true, nsFile: nsFile + ".absent", wantErr: true},
		{name: "both", dir: "/data", secret: "ops/s", wantUsage: true},
		{name: "Secret without a namespace", secret: "agent-state", wantUsage: true},
		{name: "Secret with a bad name", secret: "ops/Agent_State", wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, secret, err := agentState(tt.dir, tt.secret, tt.inCluster, tt.nsFile)
			if diff := cmp.Diff(tt.wantUsage, errors.As(err, new(usageError))); diff != "" {
				t.Fatalf("usage error (-want +got):\n%s\n%v", diff, err)
			}
			if diff := cmp.Diff(tt.wantUsage || tt.wantErr, err != nil); diff != "" {
				t.Fatalf("error (-want +got):\n%s\n%v", diff, err)
			}
			if diff := cmp.Diff(tt.wantDir, dir); diff != "" {
				t.Errorf("directory (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSecret, secret); diff != "" {
				t.Errorf("Secret (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListenAddr(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	logger := slog.New(slog.DiscardHandler)
	for _, off := range []string{"", "0"} {
		if l, err := listenAddr("--metrics-bind-address", off, true, logger); l != nil || err != nil {
			t.Errorf("address %q: %v, %v; want no listener", off, l, err)
		}
	}
	if _, err := listenAddr("--metrics-bind-address", busy.Addr().String(), true, logger); err == nil || !strings.Contains(err.Error(), "--metrics-bind-address") {
		t.Errorf("explicit busy address: %v; want an error naming --metrics-bind-address", err)
	}
	l, err := listenAddr("--metrics-bind-address", busy.Addr().String(), false, logger)
	if err != nil {
		t.Fatalf("default address busy: %v; want a free port instead", err)
	}
	defer l.Close()
	if l.Addr().String() == busy.Addr().String() || !strings.HasPrefix(l.Addr().String(), "127.0.0.1:") {
		t.Errorf("fallback listener on %s; want another port of 127.0.0.1", l.Addr())
	}
}

func TestAgentListeners(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	free := bindFlag{"127.0.0.1:0", true}
	off := bindFlag{"0", true}
	tests := []struct {
		name                    string
		probes, metrics, health bindFlag
		wantProbes, wantMetrics bool
		wantShared, wantUsage   bool
	}{
		{name: "two ports", probes: free, metrics: bindFlag{"localhost:0", true}, wantProbes: true, wantMetrics: true},
		{name: "one address: one port for both", probes: free, metrics: free, wantProbes: true, wantMetrics: true, wantShared: true},
		{name: "metrics off", probes: free, metrics: off, wantProbes: true},
		{name: "both off", probes: off, metrics: off},
		{name: "deprecated --health-listen: one port for all", probes: bindFlag{":8081", false}, metrics: bindFlag{":8080", false},
			health: free, wantProbes: true, wantMetrics: true, wantShared: true},
		{name: "deprecated --health-listen empty: all off", probes: bindFlag{":8081", false}, metrics: bindFlag{":8080", false},
			health: bindFlag{"", true}},
		{name: "deprecated and new flags mixed", probes: free, metrics: bindFlag{":8080", false}, health: free, wantUsage: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, m, err := agentListeners(tt.probes, tt.metrics, tt.health, logger)
			defer closeListeners(p, m)
			if diff := cmp.Diff(tt.wantUsage, errors.As(err, new(usageError))); diff != "" {
				t.Fatalf("usage error (-want +got):\n%s\n%v", diff, err)
			}
			got := []bool{p != nil, m != nil, p != nil && p == m}
			if diff := cmp.Diff([]bool{tt.wantProbes, tt.wantMetrics, tt.wantShared}, got); diff != "" {
				t.Errorf("probe listener, metrics listener, shared (-want +got):\n%s", diff)
			}
		})
	}
}
