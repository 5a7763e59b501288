package upgrade

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name   string
		header http.Header
		want   string
	}{
		{name: "spdy", header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}, want: "HTTP/1.1"},
		{name: "websocket, token list", header: http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, want: "HTTP/1.1"},
		{name: "plain request", header: http.Header{}, want: "HTTP/2.0"},
		{name: "connection upgrade without protocol", header: http.Header{"Connection": {"Upgrade"}}, want: "HTTP/1.1"},
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Proto)) }))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	h2 := srv.Client().Transport.(*http.Transport)
	rt := Split(h2, HTTP1Only(h2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header = tt.header
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if diff := cmp.Diff(tt.want, resp.Proto); diff != "" {
				t.Errorf("protocol (-want +got):\n%s", diff)
			}
		})
	}
}
