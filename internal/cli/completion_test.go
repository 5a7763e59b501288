package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCompletion(t *testing.T) {
	th := fleetHub(t)
	th.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-1")
	th.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-2")
	th.admin(t, "", "cluster", "create", "-g", "dev", "-n", "lab")
	hubArgs := []string{"--hub", th.url, "--hub-ca", th.ca}
	admin := append(append([]string{}, hubArgs...), "--admin-token-file", th.tokenFile)

	tests := []struct {
		name  string
		argv0 string
		env   string // TETHER_ADMIN_TOKEN_FILE
		words []string
		want  string
	}{
		{name: "groups", words: cat([]string{"cluster", "show"}, admin, "-g", ""),
			want: "dev\t1 cluster\nprod\t2 clusters\n:4\n"},
		{name: "groups by prefix", words: cat([]string{"cluster", "list"}, admin, "-g", "p"),
			want: "prod\t2 clusters\n:4\n"},
		{name: "names of the chosen group", words: cat([]string{"cluster", "delete"}, admin, "-g", "prod", "-n", ""),
			want: "edge-1\tprod, Connecting\nedge-2\tprod, Connecting\n:4\n"},
		{name: "names of every group", words: cat([]string{"cluster", "show"}, admin, "-n", ""),
			want: "edge-1\tprod, Connecting\nedge-2\tprod, Connecting\nlab\tdev, Connecting\n:4\n"},
		{name: "names by prefix", words: cat([]string{"version"}, admin, "-n", "l"),
			want: "lab\tdev, Connecting\n:4\n"},
		{name: "a command without --admin-token-file takes it from the environment", env: th.tokenFile,
			words: cat([]string{"doctor"}, hubArgs, "-g", "dev", "-n", ""), want: "lab\tdev, Connecting\n:4\n"},
		{name: "proxy", env: th.tokenFile, words: cat([]string{"proxy"}, hubArgs, "-g", ""),
			want: "dev\t1 cluster\nprod\t2 clusters\n:4\n"},
		{name: "get-credentials", env: th.tokenFile, words: cat([]string{"get-credentials"}, hubArgs, "-g", "dev", "-n", ""),
			want: "lab\tdev, Connecting\n:4\n"},
		{name: "a new cluster's name completes to nothing", words: cat([]string{"cluster", "create"}, admin, "-n", ""),
			want: ":4\n"},
		{name: "locations", words: cat([]string{"cluster", "create"}, hubArgs, "-l", ""),
			want: "eastus2\tEast US 2\nwesteurope\tWest Europe\n:4\n"},
		{name: "output formats", words: []string{"cluster", "list", "-o", ""},
			want: "table\njson\nyaml\ntsv\n:4\n"},
		{name: "no sign-in: no names, no files", words: cat([]string{"cluster", "show"}, hubArgs, "-g", ""),
			want: ":5\n"},
		{name: "no hub: no names, no files", words: []string{"cluster", "show", "--hub", "", "-g", ""},
			want: ":5\n"},
		{name: "as the kubectl plugin's completion helper", argv0: "/usr/local/bin/kubectl_complete-tether",
			words: cat([]string{"cluster", "show"}, admin, "-g", "d"), want: "dev\t1 cluster\n:4\n"},
		{name: "subcommands for the kubectl plugin", argv0: "kubectl_complete-tether",
			words: []string{"clu"}, want: "cluster\tRegister clusters on the hub and issue join tokens\n:4\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TETHER_ADMIN_TOKEN_FILE", tt.env)
			argv := []string{"tether", "__complete"}
			if tt.argv0 != "" {
				argv = []string{tt.argv0}
			}
			var out, errOut bytes.Buffer
			if err := Run(context.Background(), append(argv, tt.words...), strings.NewReader(""), &out, &errOut); err != nil {
				t.Fatalf("completion: %v\n%s", err, errOut.String())
			}
			if diff := cmp.Diff(tt.want, out.String()); diff != "" {
				t.Errorf("completions of %q (-want +got):\n%s", tt.words, diff)
			}
		})
	}
}

// cat joins words and lists of words into one list.
func cat(first []string, rest ...any) []string {
	out := append([]string{}, first...)
	for _, r := range rest {
		switch r := r.(type) {
		case string:
			out = append(out, r)
		case []string:
			out = append(out, r...)
		}
	}
	return out
}

func TestCompletionScripts(t *testing.T) {
	tests := []struct {
		shell, want string
	}{
		{shell: "bash", want: "__start_tether"},
		{shell: "zsh", want: "#compdef tether"},
		{shell: "fish", want: "complete -c tether"},
		{shell: "powershell", want: "Register-ArgumentCompleter"},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := Run(context.Background(), []string{"tether", "completion", tt.shell}, nil, &out, &errOut); err != nil {
				t.Fatalf("completion %s: %v", tt.shell, err)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("the %s script lacks %q", tt.shell, tt.want)
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr: %q, want nothing", errOut.String())
			}
		})
	}
}
