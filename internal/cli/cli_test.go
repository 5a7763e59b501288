package cli

import (
	"bytes"
	"context"
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
