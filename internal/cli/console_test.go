package cli

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tether.dev/tether/internal/store/sqlite"
)

func TestConsoleIssuers(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logger := slog.New(slog.DiscardHandler)
	emb, err := newEmbeddedIssuer("https://hub.example:8443/oidc", dir, st, 0, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := write("secret", "s3cret\n")
	tests := []struct {
		name    string
		file    string // the --oidc-issuers content; "" for none
		want    []string
		wantErr string
	}{
		{"embedded only", "", []string{"Sign in with this hub&#39;s directory"}, ""},
		{"issuer without console client", `[{"url": "https://login.example", "audiences": ["api://tether"]}]`, []string{"Sign in with this hub&#39;s directory"}, ""},
		{"external first", `[{"url": "https://login.example/t", "audiences": ["api://tether"], "consoleClientID": "c1", "consoleClientSecretFile": "` + secret + `"}]`,
			[]string{`id="sign-in" class="button" data-issuer="https://login.example/t" href="/console/auth/login?issuer=0"`, "Sign in with login.example", `id="sign-in-1"`, "Sign in with this hub&#39;s directory"}, ""},
		{"missing secret file", `[{"url": "https://login.example", "audiences": ["a"], "consoleClientID": "c1", "consoleClientSecretFile": "/nonexistent"}]`, nil, "console client secret"},
		{"scopes without client", `[{"url": "https://login.example", "audiences": ["a"], "consoleScopes": ["openid"]}]`, nil, "need consoleClientID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = write("issuers.json", tt.file)
			}
			handler, err := newConsole(path, "https://hub.example:8443", emb, st, logger)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("newConsole: %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			handler(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://hub.example:8443/console/", nil))
			body, _ := io.ReadAll(rec.Body)
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("sign-in page lacks %q:\n%s", w, body)
				}
			}
		})
	}
	// A hub URL with a path serves no console.
	if h, err := newConsole("", "https://example.com/tether", emb, st, logger); h != nil || err != nil {
		t.Errorf("hub URL with a path: %v %v, want no console", h != nil, err)
	}
}
