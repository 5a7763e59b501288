package cli

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
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

// TestUsageErrors runs command lines that are wrong as typed: each exits
// with 2 before any request (there is no hub), says why on stderr (main
// prints the error there), and prints nothing on stdout.
func TestUsageErrors(t *testing.T) {
	t.Setenv("TETHER_HUB", "")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "unknown subcommand of a group", args: []string{"cluster", "lsit"}, wantErr: `unknown command "lsit" for "tether cluster"`},
		{name: "unknown subcommand two levels down", args: []string{"role", "assignment", "remove"}, wantErr: `unknown command "remove"`},
		{name: "unknown completion shell", args: []string{"completion", "tcsh"}, wantErr: `unknown command "tcsh"`},
		{name: "unknown flag", args: []string{"cluster", "list", "--colour"}, wantErr: "unknown flag: --colour"},
		{name: "unknown shorthand", args: []string{"doctor", "-x"}, wantErr: "unknown shorthand flag: 'x'"},
		{name: "an argument where none is taken", args: []string{"cluster", "list", "prod"}, wantErr: `unknown command "prod"`},
		{name: "a required flag missing", args: []string{"cluster", "show", "-g", "prod"}, wantErr: `required flag(s) "name" not set`},
		{name: "invalid --output", args: []string{"cluster", "list", "-o", "xml"}, wantErr: `--output "xml": want table, json, yaml or tsv`},
		{name: "invalid --query", args: []string{"locations", "list", "--query", "[["}, wantErr: `--query "[["`},
		{name: "invalid -v", args: []string{"version", "-v", "loud"}, wantErr: `invalid argument "loud" for "-v, --v"`},
		{name: "invalid bool", args: []string{"version", "--quiet=maybe"}, wantErr: `invalid argument "maybe"`},
		{name: "invalid duration", args: []string{"cluster", "connect", "-g", "a", "-n", "b", "--timeout", "soon"}, wantErr: `invalid argument "soon"`},
		{name: "invalid --mode", args: []string{"cluster", "connect", "-g", "a", "-n", "b", "--mode", "root"}, wantErr: `--mode "root": want kubernetes-rbac or hub-rbac`},
		{name: "invalid group name", args: []string{"cluster", "show", "-g", "Prod_1", "-n", "x"}, wantErr: "--group"},
		{name: "no hub", args: []string{"cluster", "list"}, wantErr: "no hub: pass --hub"},
		{name: "doctor: -g without -n", args: []string{"doctor", "-g", "prod"}, wantErr: "-g and -n name a cluster together"},
		{name: "doctor: invalid --output", args: []string{"doctor", "-o", "xml"}, wantErr: `--output "xml"`},
		{name: "version: -n without -g", args: []string{"version", "-n", "x"}, wantErr: "-g and -n name a cluster together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), append([]string{"tether"}, tt.args...), nil, &out, &errOut)
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(2, ExitCode(err)); diff != "" {
				t.Errorf("exit code (-want +got):\n%s (err: %v)", diff, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not say %q", err, tt.wantErr)
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}

// TestGroupHelp checks that a command that groups others, run alone,
// prints its help as a result (stdout, exit code 0).
func TestGroupHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"tether", "cluster"}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "tether cluster [command]") || errOut.Len() != 0 {
		t.Errorf("stdout %q, stderr %q: want the help on stdout", out.String(), errOut.String())
	}
}
