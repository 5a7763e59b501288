package kubeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestTarget(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	withCtx := filepath.Join(dir, "with-ctx")
	missing1 := filepath.Join(dir, "missing1")
	missing2 := filepath.Join(dir, "missing2")
	if err := os.WriteFile(existing, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(withCtx, Entry{Name: "tether-a", Server: "https://a"}, true); err != nil {
		t.Fatal(err)
	}
	list := func(files ...string) string { return strings.Join(files, string(os.PathListSeparator)) }
	tests := []struct {
		name    string
		paths   Paths
		context string
		want    string
	}{
		{name: "explicit wins", paths: Paths{Explicit: "/x/y", Env: existing, Home: "/home/u"}, want: "/x/y"},
		{name: "no env: home", paths: Paths{Home: "/home/u"}, want: "/home/u/.kube/config"},
		{name: "single env file even if missing", paths: Paths{Env: missing1, Home: "/home/u"}, want: missing1},
		{name: "first existing env file", paths: Paths{Env: list(missing1, existing, missing2)}, want: existing},
		{name: "last env file when none exists", paths: Paths{Env: list(missing1, missing2)}, want: missing2},
		{name: "file that already has the context", paths: Paths{Env: list(existing, withCtx)}, context: "tether-a", want: withCtx},
		{name: "empty list entries ignored", paths: Paths{Env: list("", missing1, ""), Home: "/home/u"}, want: missing1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.paths.Target(tt.context)); diff != "" {
				t.Errorf("Target (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeKeepsOtherEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "config")
	// A user's existing file with its own context.
	mine := clientcmdapi.NewConfig()
	mine.Clusters["prod"] = &clientcmdapi.Cluster{Server: "https://prod.example:6443"}
	mine.AuthInfos["me"] = &clientcmdapi.AuthInfo{Token: "secret"}
	mine.Contexts["prod"] = &clientcmdapi.Context{Cluster: "prod", AuthInfo: "me", Namespace: "web"}
	mine.CurrentContext = "prod"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*mine, path); err != nil {
		t.Fatal(err)
	}

	prev, err := Merge(path, Entry{Name: "tether-g-c", Server: "https://127.0.0.1:47011", CAData: []byte("pem"), Token: "t"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("prod", prev); diff != "" {
		t.Errorf("previous context (-want +got):\n%s", diff)
	}
	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("tether-g-c", got.CurrentContext); diff != "" {
		t.Errorf("current context (-want +got):\n%s", diff)
	}
	if got.Contexts["prod"] == nil || got.Contexts["prod"].Namespace != "web" || got.AuthInfos["me"].Token != "secret" ||
		got.Clusters["prod"].Server != "https://prod.example:6443" {
		t.Errorf("the user's own entries changed: %+v", got.Contexts["prod"])
	}
	if got.Clusters["tether-g-c"].Server != "https://127.0.0.1:47011" || string(got.Clusters["tether-g-c"].CertificateAuthorityData) != "pem" {
		t.Errorf("new cluster entry wrong: %+v", got.Clusters["tether-g-c"])
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(os.FileMode(0o600), info.Mode().Perm()); diff != "" {
		t.Errorf("file mode (-want +got):\n%s", diff)
	}

	if err := Remove(path, "tether-g-c", prev); err != nil {
		t.Fatal(err)
	}
	got, err = clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Contexts["tether-g-c"] != nil || got.Clusters["tether-g-c"] != nil || got.AuthInfos["tether-g-c"] != nil {
		t.Errorf("Remove left entries behind")
	}
	if diff := cmp.Diff("prod", got.CurrentContext); diff != "" {
		t.Errorf("current context after Remove (-want +got):\n%s", diff)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".config.tmp-*"))
	if len(leftovers) > 0 || fileExists(path+".lock") {
		t.Errorf("temporary or lock files left: %v", leftovers)
	}
}

func TestMergeWithoutSwitchingKeepsCurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if _, err := Merge(path, Entry{Name: "a", Server: "https://a"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(path, Entry{Name: "b", Server: "https://b"}, false); err != nil {
		t.Fatal(err)
	}
	got, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("a", got.CurrentContext); diff != "" {
		t.Errorf("current (-want +got):\n%s", diff)
	}
}

func TestMergeRefusesBrokenFileAndKeepsIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	broken := []byte("this: [is not: a kubeconfig\n")
	if err := os.WriteFile(path, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Merge(path, Entry{Name: "a", Server: "https://a"}, true)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Merge into a broken file: want an error naming the file, got %v", err)
	}
	got, _ := os.ReadFile(path)
	if diff := cmp.Diff(string(broken), string(got)); diff != "" {
		t.Errorf("broken file was changed (-want +got):\n%s", diff)
	}
}

func TestMergeHonoursKubectlLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path+".lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Merge(path, Entry{Name: "a", Server: "https://a"}, true)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("want a lock error, got %v", err)
	}
	if fileExists(path) {
		t.Errorf("file written despite the lock")
	}
}

func TestSerialize(t *testing.T) {
	b, err := Serialize(Entry{Name: "x", Server: "https://s", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "x" || cfg.AuthInfos["x"].Token != "tok" || cfg.Clusters["x"].Server != "https://s" {
		t.Errorf("serialized config wrong: %+v", cfg)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
