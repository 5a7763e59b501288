package access_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

// parsed is what ParseScope returned, in a comparable form.
type parsed struct {
	Level                     access.Level
	Group, Cluster, Namespace string
	String                    string
	Err                       string
	Invalid                   bool // the error matches ErrInvalid
}

func parse(s string) parsed {
	sc, err := access.ParseScope(s)
	return parsed{
		Level: sc.Level(), Group: sc.Group(), Cluster: sc.Cluster(), Namespace: sc.Namespace(),
		String: sc.String(), Err: errText(err), Invalid: errors.Is(err, access.ErrInvalid),
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bad is the parse result of an invalid scope with error message msg.
func bad(msg string) parsed { return parsed{Err: msg, Invalid: true} }

const formats = "want /, /groups/{group}, /groups/{group}/clusters/{cluster} or /groups/{group}/clusters/{cluster}/namespaces/{namespace}"

var (
	name63 = strings.Repeat("a", 63)
	name64 = strings.Repeat("a", 64)
)

func TestParseScope(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want parsed
	}{
		{"root", "/", parsed{Level: access.LevelRoot, String: "/"}},
		{"group", "/groups/prod", parsed{Level: access.LevelGroup, Group: "prod", String: "/groups/prod"}},
		{"cluster", "/groups/prod/clusters/web-1", parsed{Level: access.LevelCluster, Group: "prod", Cluster: "web-1", String: "/groups/prod/clusters/web-1"}},
		{"namespace", "/groups/prod/clusters/web-1/namespaces/shop", parsed{Level: access.LevelNamespace, Group: "prod", Cluster: "web-1", Namespace: "shop", String: "/groups/prod/clusters/web-1/namespaces/shop"}},
		{"kube-system namespace", "/groups/g/clusters/c/namespaces/kube-system", parsed{Level: access.LevelNamespace, Group: "g", Cluster: "c", Namespace: "kube-system", String: "/groups/g/clusters/c/namespaces/kube-system"}},
		{"digits only", "/groups/1/clusters/2/namespaces/3", parsed{Level: access.LevelNamespace, Group: "1", Cluster: "2", Namespace: "3", String: "/groups/1/clusters/2/namespaces/3"}},
		{"63-character names", "/groups/" + name63 + "/clusters/" + name63 + "/namespaces/" + name63, parsed{Level: access.LevelNamespace, Group: name63, Cluster: name63, Namespace: name63, String: "/groups/" + name63 + "/clusters/" + name63 + "/namespaces/" + name63}},

		{"empty", "", bad(`invalid scope "": ` + formats)},
		{"no leading slash", "groups/prod", bad(`invalid scope "groups/prod": ` + formats)},
		{"double slash root", "//", bad(`invalid scope "//": remove the trailing slash`)},
		{"trailing slash group", "/groups/prod/", bad(`invalid scope "/groups/prod/": remove the trailing slash`)},
		{"trailing slash cluster", "/groups/prod/clusters/web/", bad(`invalid scope "/groups/prod/clusters/web/": remove the trailing slash`)},
		{"groups keyword alone", "/groups", bad(`invalid scope "/groups": ` + formats)},
		{"clusters keyword alone", "/groups/prod/clusters", bad(`invalid scope "/groups/prod/clusters": ` + formats)},
		{"empty group", "/groups//clusters/web", bad(`invalid scope "/groups//clusters/web": group name is empty`)},
		{"dot dot", "..", bad(`invalid scope "..": ` + formats)},
		{"dot dot as group", "/groups/..", bad(`invalid scope "/groups/..": group name "..": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"dot dot climbing out", "/groups/prod/clusters/web/namespaces/../../../groups/other", bad(`invalid scope "/groups/prod/clusters/web/namespaces/../../../groups/other": ` + formats)},
		{"dot dot as cluster", "/groups/prod/clusters/../namespaces/x", bad(`invalid scope "/groups/prod/clusters/../namespaces/x": cluster name "..": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"dot segment", "/./groups/prod", bad(`invalid scope "/./groups/prod": ` + formats)},
		{"uppercase name", "/groups/Prod", bad(`invalid scope "/groups/Prod": group name "Prod": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"uppercase keyword", "/Groups/prod", bad(`invalid scope "/Groups/prod": ` + formats)},
		{"uppercase namespace", "/groups/g/clusters/c/namespaces/Shop", bad(`invalid scope "/groups/g/clusters/c/namespaces/Shop": namespace name "Shop": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"64-character group", "/groups/" + name64, bad(`invalid scope "/groups/` + name64 + `": group name is longer than 63 characters`)},
		{"64-character cluster", "/groups/g/clusters/" + name64, bad(`invalid scope "/groups/g/clusters/` + name64 + `": cluster name is longer than 63 characters`)},
		{"64-character namespace", "/groups/g/clusters/c/namespaces/" + name64, bad(`invalid scope "/groups/g/clusters/c/namespaces/` + name64 + `": namespace name is longer than 63 characters`)},
		{"system: group", "/groups/system:masters", bad(`invalid scope "/groups/system:masters": group name "system:masters": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"system: cluster", "/groups/g/clusters/system:admin", bad(`invalid scope "/groups/g/clusters/system:admin": cluster name "system:admin": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"system: namespace", "/groups/g/clusters/c/namespaces/system:serviceaccounts", bad(`invalid scope "/groups/g/clusters/c/namespaces/system:serviceaccounts": namespace name "system:serviceaccounts": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"system: keyword", "/system:groups/g", bad(`invalid scope "/system:groups/g": ` + formats)},
		{"leading hyphen", "/groups/-prod", bad(`invalid scope "/groups/-prod": group name "-prod": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"trailing hyphen", "/groups/prod-", bad(`invalid scope "/groups/prod-": group name "prod-": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"dotted name", "/groups/a.b", bad(`invalid scope "/groups/a.b": group name "a.b": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"percent escape", "/groups/a%2fb", bad(`invalid scope "/groups/a%2fb": group name "a%2fb": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"query", "/groups/a?b=c", bad(`invalid scope "/groups/a?b=c": group name "a?b=c": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"non-ASCII", "/groups/café", bad(`invalid scope "/groups/café": group name "café": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"NUL", "/groups/a\x00", bad(`invalid scope "/groups/a\x00": group name "a\x00": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"leading space", " /groups/a", bad(`invalid scope " /groups/a": ` + formats)},
		{"trailing space", "/groups/a ", bad(`invalid scope "/groups/a ": group name "a ": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"backslashes", `\groups\a`, bad(`invalid scope "\\groups\\a": ` + formats)},
		{"namespace without cluster", "/groups/g/namespaces/n", bad(`invalid scope "/groups/g/namespaces/n": ` + formats)},
		{"extra segments", "/groups/g/clusters/c/namespaces/n/pods/p", bad(`invalid scope "/groups/g/clusters/c/namespaces/n/pods/p": ` + formats)},
		{"odd segments", "/groups/g/clusters", bad(`invalid scope "/groups/g/clusters": ` + formats)},
		{"too long", "/groups/" + strings.Repeat("a/", 1<<20), bad("invalid scope: longer than 219 characters; " + formats)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parse(tt.in)); diff != "" {
				t.Errorf("ParseScope(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func mustScope(t testing.TB, s string) access.Scope {
	t.Helper()
	sc, err := access.ParseScope(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestContains(t *testing.T) {
	tests := []struct {
		name         string
		outer, inner string
		want         bool
	}{
		{"root contains root", "/", "/", true},
		{"root contains group", "/", "/groups/g", true},
		{"root contains namespace", "/", "/groups/g/clusters/c/namespaces/n", true},
		{"group contains itself", "/groups/g", "/groups/g", true},
		{"group contains its cluster", "/groups/g", "/groups/g/clusters/c", true},
		{"group contains its namespace", "/groups/g", "/groups/g/clusters/c/namespaces/n", true},
		{"cluster contains its namespace", "/groups/g/clusters/c", "/groups/g/clusters/c/namespaces/n", true},
		{"namespace contains itself", "/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/c/namespaces/n", true},
		{"group does not contain root", "/groups/g", "/", false},
		{"cluster does not contain its group", "/groups/g/clusters/c", "/groups/g", false},
		{"namespace does not contain its cluster", "/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/c", false},
		{"other group", "/groups/g", "/groups/h/clusters/c", false},
		{"group name is a prefix", "/groups/g", "/groups/g2/clusters/c", false},
		{"cluster name is a prefix", "/groups/g/clusters/c", "/groups/g/clusters/c2/namespaces/n", false},
		{"same cluster name in another group", "/groups/g/clusters/c", "/groups/h/clusters/c", false},
		{"same namespace in another cluster", "/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/d/namespaces/n", false},
		{"other namespace", "/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/c/namespaces/m", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := access.Contains(mustScope(t, tt.outer), mustScope(t, tt.inner))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Contains(%s, %s) (-want +got):\n%s", tt.outer, tt.inner, diff)
			}
		})
	}
}

func TestContainsZeroScope(t *testing.T) {
	var zero access.Scope
	root := mustScope(t, "/")
	tests := []struct {
		name         string
		outer, inner access.Scope
	}{
		{"zero in zero", zero, zero},
		{"zero in root", root, zero},
		{"root in zero", zero, root},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(false, access.Contains(tt.outer, tt.inner)); diff != "" {
				t.Errorf("Contains (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParent(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"namespace", "/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/c"},
		{"cluster", "/groups/g/clusters/c", "/groups/g"},
		{"group", "/groups/g", "/"},
		{"root", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, mustScope(t, tt.in).Parent().String()); diff != "" {
				t.Errorf("Parent(%s) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// scopeRE is the scope grammar as a regular expression, the fuzz oracle.
var scopeRE = regexp.MustCompile(strings.ReplaceAll(
	`^(/|/groups/N(/clusters/N(/namespaces/N)?)?)$`, "N", `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`))

func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"", "/", "//", "..", "/..", "/groups/g", "/groups/g/", "/groups/G", "/groups/g/clusters/c",
		"/groups/g/clusters/c/namespaces/n", "/groups/g/clusters/c/namespaces/n/", "/groups/../clusters/c",
		"/groups/g/clusters/c/namespaces/../../..", "/groups/system:masters", "/groups/g/clusters/c/namespaces/system:x",
		"/groups/" + name63, "/groups/" + name64, "/groups/a-b/clusters/0/namespaces/kube-system",
		"/groups//clusters/c", "/groups/g/namespaces/n", "/groups/café", "/groups/a\x00", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := access.ParseScope(s)
		if got, want := err == nil, scopeRE.MatchString(s); got != want {
			t.Fatalf("ParseScope(%q) = %v, want valid %v", s, err, want)
		}
		if err != nil {
			if !errors.Is(err, access.ErrInvalid) || !sc.IsZero() {
				t.Fatalf("ParseScope(%q) = %+v, %v: want the zero Scope and an error matching ErrInvalid", s, sc, err)
			}
			if len(err.Error()) > 1500 { // at most 219 input bytes, each quoted as up to 4, twice
				t.Fatalf("ParseScope(%q): error of %d bytes", s, len(err.Error()))
			}
			return
		}
		if sc.String() != s {
			t.Fatalf("ParseScope(%q).String() = %q", s, sc.String())
		}
		if !access.Contains(mustScope(t, "/"), sc) || !access.Contains(sc, sc) {
			t.Fatalf("%s: not contained in the root or in itself", s)
		}
		if p := sc.Parent(); !p.IsZero() && (!access.Contains(p, sc) || access.Contains(sc, p) || mustScope(t, p.String()) != p) {
			t.Fatalf("%s: parent %s does not round-trip or contain it, or is contained in it", s, p)
		}
	})
}

func TestLevelString(t *testing.T) {
	got := []string{access.Level(0).String(), access.LevelRoot.String(), access.LevelGroup.String(), access.LevelCluster.String(), access.LevelNamespace.String(), access.Level(5).String()}
	want := []string{"Level(0)", "root", "group", "cluster", "namespace", "Level(5)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Level.String (-want +got):\n%s", diff)
	}
}
