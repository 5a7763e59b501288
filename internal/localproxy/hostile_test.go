package localproxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestHostileCallers: what a browser page, a DNS-rebinding site or another
// program on the machine without the kubeconfig could send. Each is refused
// with a Status saying why; the controls pass.
func TestHostileCallers(t *testing.T) {
	up := upstream(t)
	p, base, client := startProxy(t, up)
	good := "Bearer " + p.LocalToken()
	tests := []struct {
		name     string
		host     string
		header   http.Header
		wantCode int
		wantMsg  string
	}{
		{name: "control: kubectl", header: http.Header{"Authorization": {good}}, wantCode: 200},
		{name: "control: a page served from this machine", header: http.Header{"Authorization": {good}, "Origin": {"http://localhost:3000"}}, wantCode: 200},
		{name: "control: a page at 127.0.0.1", header: http.Header{"Authorization": {good}, "Origin": {"https://127.0.0.1:8443"}}, wantCode: 200},
		{name: "a page of another site", header: http.Header{"Authorization": {good}, "Origin": {"https://evil.example"}}, wantCode: 403, wantMsg: "web pages of other sites"},
		{name: "a sandboxed page (Origin null)", header: http.Header{"Authorization": {good}, "Origin": {"null"}}, wantCode: 403, wantMsg: "web pages of other sites"},
		{name: "a site whose name starts like localhost", header: http.Header{"Authorization": {good}, "Origin": {"http://localhost.evil.example"}}, wantCode: 403, wantMsg: "web pages of other sites"},
		{name: "a page without the token", header: http.Header{"Origin": {"https://evil.example"}}, wantCode: 403, wantMsg: "web pages of other sites"},
		{name: "DNS rebinding: a name resolving to 127.0.0.1", host: "127.0.0.1.nip.io", header: http.Header{"Authorization": {good}}, wantCode: 403, wantMsg: "not a loopback name"},
		{name: "a name starting with localhost", host: "localhost.evil.example:47011", header: http.Header{"Authorization": {good}}, wantCode: 403, wantMsg: "not a loopback name"},
		{name: "the unspecified address", host: "0.0.0.0", header: http.Header{"Authorization": {good}}, wantCode: 403, wantMsg: "not a loopback name"},
		{name: "no token", header: http.Header{}, wantCode: 401, wantMsg: "needs the token from the kubeconfig"},
		{name: "a token one character short", header: http.Header{"Authorization": {good[:len(good)-1]}}, wantCode: 401, wantMsg: "needs the token from the kubeconfig"},
		{name: "the token as Basic credentials", header: http.Header{"Authorization": {"Basic " + p.LocalToken()}}, wantCode: 401, wantMsg: "needs the token from the kubeconfig"},
		{name: "the upstream credential is not a local token", header: http.Header{"Authorization": {"Bearer real-token"}}, wantCode: 401, wantMsg: "needs the token from the kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/api/v1/pods", nil)
			req.Header = tt.header
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.wantCode)
			}
			if tt.wantCode == 200 {
				return
			}
			var st struct{ Kind, Message string }
			if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("answer %s; want a Status whose message says %q", body, tt.wantMsg)
			}
		})
	}
}
