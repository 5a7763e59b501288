package kubeconfig

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// others is what a kubeconfig holds besides the entries named name.
func others(cfg *clientcmdapi.Config, name string) map[string]any {
	out := map[string]any{}
	for k, v := range cfg.Clusters {
		if k != name {
			out["cluster "+k] = v
		}
	}
	for k, v := range cfg.AuthInfos {
		if k != name {
			out["user "+k] = v
		}
	}
	for k, v := range cfg.Contexts {
		if k != name {
			out["context "+k] = v
		}
	}
	return out
}

// onlyFile fails unless dir holds nothing but the kubeconfig: no temporary
// file of a write, no lock.
func onlyFile(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != 1 || des[0].Name() != "config" {
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		t.Fatalf("directory holds %q, want only the kubeconfig", names)
	}
}

// FuzzMerge: whatever the user's kubeconfig holds, Merge either refuses it
// (and leaves the file byte for byte as it was) or adds the entry and keeps
// every other entry and the file's privacy; Remove then takes the entry out
// and keeps the others again; a failed update leaves the old file; and no
// temporary or lock file is ever left behind.
func FuzzMerge(f *testing.F) {
	mine := []byte(`apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.example:6443
    certificate-authority-data: cGVt
users:
- name: me
  user:
    token: secret
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: kubelogin
      args: [get-token]
      env: [{name: A, value: b}]
      interactiveMode: IfAvailable
contexts:
- name: prod
  context: {cluster: prod, user: me, namespace: web}
- name: tether-g-c
  context: {cluster: old, user: old}
current-context: prod
preferences: {colors: true}
`)
	for _, seed := range []struct {
		existing            []byte
		name, server, token string
		setCurrent          bool
	}{
		{mine, "tether-g-c", "https://127.0.0.1:47011", "local-token", true},
		{mine, "prod", "https://hub.example/k8s/g/c", "", false},
		{nil, "a", "https://a", "t", true},
		{[]byte("this: [is not: a kubeconfig\n"), "a", "https://a", "t", true},
		{[]byte("apiVersion: v1\nkind: Pod\n"), "a", "https://a", "t", true},
		{[]byte("{\"clusters\":[{\"name\":\"x\"}],\"contexts\":null}"), "x", "https://x", "", false},
		{[]byte("clusters:\n- name: dup\n  cluster: {server: a}\n- name: dup\n  cluster: {server: b}\n"), "y", "https://y", "", true},
		{[]byte("a: &a [*a, *a]\n"), "a", "https://a", "t", true},
		{[]byte("current-context: gone\n"), "a", "https://a", "t", false},
		{mine, "", "https://a", "t", true},
		{mine, "a", "", "t", true},
		{[]byte("\xff\xfe"), "a", "https://a", "t", true},
	} {
		f.Add(seed.existing, seed.name, seed.server, seed.token, seed.setCurrent)
	}
	f.Fuzz(func(t *testing.T, existing []byte, name, server, token string, setCurrent bool) {
		if !utf8.ValidString(name) || !utf8.ValidString(server) || !utf8.ValidString(token) {
			return // kubeconfigs are YAML text: the entry's strings are
		}
		dir := t.TempDir()
		path := filepath.Join(dir, "config")
		if err := os.WriteFile(path, existing, 0o600); err != nil {
			t.Fatal(err)
		}
		before, loadErr := clientcmd.LoadFromFile(path)

		// A failed update leaves the old file.
		errChange := errors.New("change refused")
		if err := update(path, func(*clientcmdapi.Config) error { return errChange }); err == nil {
			t.Fatal("update succeeded although its change failed")
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, existing) {
			t.Fatalf("a failed update changed the file to %q", got)
		}
		onlyFile(t, dir)

		e := Entry{Name: name, Server: server, Token: token}
		prev, err := Merge(path, e, setCurrent)
		onlyFile(t, dir)
		if err != nil {
			if got, _ := os.ReadFile(path); !bytes.Equal(got, existing) {
				t.Fatalf("Merge failed (%v) but changed the file to %q", err, got)
			}
			// YAML cannot carry every string (go-yaml refuses control
			// characters): such a config is refused whole, never half
			// written.
			if loadErr == nil && name != "" && server != "" && !strings.HasPrefix(err.Error(), "encode kubeconfig: ") {
				t.Fatalf("Merge into a readable kubeconfig failed: %v", err)
			}
			return
		}
		if loadErr != nil || name == "" || server == "" {
			t.Fatalf("Merge succeeded on an unreadable file (%v) or an incomplete entry %+v", loadErr, e)
		}
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("file mode: %v %v", info, err)
		}
		after, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatalf("Merge wrote a kubeconfig that does not load: %v", err)
		}
		if diff := cmp.Diff(others(before, name), others(after, name), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Merge changed other entries (-before +after):\n%s", diff)
		}
		wantCurrent := before.CurrentContext
		if setCurrent {
			wantCurrent = name
		}
		c, u, x := after.Clusters[name], after.AuthInfos[name], after.Contexts[name]
		if prev != before.CurrentContext || after.CurrentContext != wantCurrent || c == nil || u == nil || x == nil ||
			c.Server != server || u.Token != token || x.Cluster != name || x.AuthInfo != name {
			t.Fatalf("after Merge(%+v, %v): previous %q, current %q, entries %+v %+v %+v", e, setCurrent, prev, after.CurrentContext, c, u, x)
		}
		if got := (Paths{Env: path + string(os.PathListSeparator) + filepath.Join(dir, "missing")}).Target(name); got != path {
			t.Fatalf("Target(%q) = %q, want the file that has the context", name, got)
		}

		if err := Remove(path, name, prev); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		onlyFile(t, dir)
		removed, err := clientcmd.LoadFromFile(path)
		if err != nil {
			t.Fatalf("Remove wrote a kubeconfig that does not load: %v", err)
		}
		if diff := cmp.Diff(others(before, name), others(removed, name), cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Remove changed other entries (-before +after):\n%s", diff)
		}
		if removed.Clusters[name] != nil || removed.AuthInfos[name] != nil || removed.Contexts[name] != nil {
			t.Fatalf("Remove left the entries of %q", name)
		}
		wantCurrent = after.CurrentContext
		if wantCurrent == name {
			wantCurrent = prev
			if removed.Contexts[prev] == nil {
				wantCurrent = ""
			}
		}
		if removed.CurrentContext != wantCurrent {
			t.Fatalf("current context after Remove: %q, want %q", removed.CurrentContext, wantCurrent)
		}
	})
}
