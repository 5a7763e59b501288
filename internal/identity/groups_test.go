package identity

import (
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// groupServer is a groups endpoint in the style of Microsoft Graph:
// POST /users/{oid}/groups gives the first page, @odata.nextLink the rest.
type groupServer struct {
	srv      *httptest.Server
	caPEM    []byte
	host     string
	pageSize int

	mu       sync.Mutex          // guards groups and requests
	groups   map[string][]string // by object ID
	requests []groupRequest
}

type groupRequest struct {
	Method string
	Path   string
	Auth   string
}

func newGroupServer(t testing.TB, pageSize int) *groupServer {
	t.Helper()
	gs := &groupServer{pageSize: pageSize, groups: map[string][]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/users/{oid}/groups", func(w http.ResponseWriter, r *http.Request) {
		oid := r.PathValue("oid")
		gs.mu.Lock()
		gs.requests = append(gs.requests, groupRequest{Method: r.Method, Path: r.URL.RequestURI(), Auth: r.Header.Get("Authorization")})
		all := gs.groups[oid]
		gs.mu.Unlock()
		skip := 0
		if r.Method == http.MethodGet {
			skip, _ = strconv.Atoi(r.URL.Query().Get("skip"))
		}
		end := min(skip+gs.pageSize, len(all))
		resp := map[string]any{"value": all[skip:end]}
		switch {
		case oid == "wanderer":
			resp["@odata.nextLink"] = "https://elsewhere.example/users/wanderer/groups?skip=1"
		case end < len(all):
			resp["@odata.nextLink"] = gs.srv.URL + r.URL.Path + "?skip=" + strconv.Itoa(end)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
	gs.srv = httptest.NewTLSServer(mux)
	t.Cleanup(gs.srv.Close)
	gs.host = strings.TrimPrefix(gs.srv.URL, "https://")
	gs.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gs.srv.Certificate().Raw})
	return gs
}

func (gs *groupServer) set(oid string, groups []string) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	gs.groups[oid] = groups
}

func (gs *groupServer) endpoint(oid string) string {
	return gs.srv.URL + "/users/" + oid + "/groups"
}

func (gs *groupServer) seen() []groupRequest {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return append([]groupRequest(nil), gs.requests...)
}

func newGroupSource(t testing.TB, cfg HTTPGroupSourceConfig) *HTTPGroupSource {
	t.Helper()
	s, err := NewHTTPGroupSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestHTTPGroupSource(t *testing.T) {
	gs := newGroupServer(t, 250)
	gs.set("many", uuids(1, 500))
	gs.set("none", nil)
	gs.set("objects", nil)
	gs.set("wanderer", uuids(2, 3))
	gs.set("crowd", uuids(3, 101))
	src := newGroupSource(t, HTTPGroupSourceConfig{CABundle: gs.caPEM})
	small := newGroupSource(t, HTTPGroupSourceConfig{CABundle: gs.caPEM, MaxGroups: 100})
	tight := newGroupSource(t, HTTPGroupSourceConfig{CABundle: gs.caPEM, MaxBytes: 10000})

	tests := []struct {
		name     string
		src      *HTTPGroupSource
		endpoint string
		want     []string
		wantErr  error
		wantMsg  string
	}{
		{name: "500 groups over two pages", src: src, endpoint: gs.endpoint("many"), want: uuids(1, 500)},
		{name: "no groups", src: src, endpoint: gs.endpoint("none")},
		{name: "next link to another host", src: src, endpoint: gs.endpoint("wanderer"), wantErr: errOther, wantMsg: `next link leaves ` + gs.host + ` for "elsewhere.example"`},
		{name: "more groups than allowed", src: small, endpoint: gs.endpoint("crowd"), wantErr: ErrTooManyGroups, wantMsg: "more than 100 groups"},
		{name: "more bytes than allowed", src: tight, endpoint: gs.endpoint("many"), wantErr: errOther, wantMsg: "larger than 10000 bytes"},
		{name: "plain http refused", src: src, endpoint: "http://" + gs.host + "/users/many/groups", wantErr: errOther, wantMsg: "not an https URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.src.Groups(t.Context(), GroupQuery{Endpoint: tc.endpoint, Token: "caller-token"})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
			if !strings.Contains(errString(err), tc.wantMsg) {
				t.Errorf("error %q, want one containing %q", errString(err), tc.wantMsg)
			}
		})
	}

	// The caller's own token is the bearer; the first page is a POST,
	// the next pages GETs of @odata.nextLink on the same host.
	want := []groupRequest{
		{Method: "POST", Path: "/users/many/groups", Auth: "Bearer caller-token"},
		{Method: "GET", Path: "/users/many/groups?skip=250", Auth: "Bearer caller-token"},
	}
	if diff := cmp.Diff(want, gs.seen()[:2]); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestGroupIDEntries(t *testing.T) {
	tests := []struct {
		name    string
		entry   string
		want    string
		wantErr bool
	}{
		{name: "string", entry: `"g1"`, want: "g1"},
		{name: "object with id", entry: `{"@odata.type":"#microsoft.graph.group","id":"g2"}`, want: "g2"},
		{name: "object without id", entry: `{"displayName":"x"}`, wantErr: true},
		{name: "number", entry: `42`, wantErr: true},
		{name: "empty string", entry: `""`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := groupID(json.RawMessage(tc.entry))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("id (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantErr, err != nil); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
		})
	}
}
