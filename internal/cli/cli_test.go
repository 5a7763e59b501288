package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
	}{
		{name: "version", args: []string{"tether", "version"}, wantOut: Version + "\n"},
		{name: "version as kubectl plugin", args: []string{"/usr/local/bin/kubectl-tether", "version"}, wantOut: Version + "\n"},
		{name: "unknown command is a usage error", args: []string{"tether", "frobnicate"}, wantCode: 2},
		{name: "unknown flag is a usage error", args: []string{"tether", "version", "--nope"}, wantCode: 2},
		{name: "extra argument is a usage error", args: []string{"tether", "version", "extra"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), tt.args, nil, &out, &errOut)
			code := 0
			if err != nil {
				code = ExitCode(err)
			}
			if diff := cmp.Diff(tt.wantCode, code); diff != "" {
				t.Errorf("exit code (-want +got):\n%s (err: %v)", diff, err)
			}
			if diff := cmp.Diff(tt.wantOut, out.String()); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublicURL(t *testing.T) {
	host, _ := os.Hostname()
	for _, tc := range []struct {
		flag, listen string
		sans         []string
		want         string
		wantErr      bool
	}{
		{flag: "https://hub.example.com:8443/", listen: ":8443", want: "https://hub.example.com:8443"},
		{flag: "https://hub.example.com/tether", listen: ":8443", want: "https://hub.example.com/tether"},
		{flag: "http://hub.example.com", listen: ":8443", wantErr: true},
		{flag: "https://hub.example.com/?x=1", listen: ":8443", wantErr: true},
		{listen: "10.0.0.5:8443", want: "https://10.0.0.5:8443"},
		{listen: "10.0.0.5:8443", sans: []string{"hub.example.com"}, want: "https://hub.example.com:8443"},
		{listen: ":443", sans: []string{"hub.example.com"}, want: "https://hub.example.com"},
		{listen: "[::]:8443", want: "https://" + net.JoinHostPort(host, "8443")},
		{listen: "[::1]:8443", want: "https://[::1]:8443"},
		{listen: "nonsense", wantErr: true},
	} {
		got, err := publicURL(tc.flag, tc.listen, tc.sans)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("publicURL(%q, %q, %q) = %q, %v; want %q (error %t)", tc.flag, tc.listen, tc.sans, got, err, tc.want, tc.wantErr)
		}
	}
}
