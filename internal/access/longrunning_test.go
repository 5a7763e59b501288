package access

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLongRunningKind(t *testing.T) {
	tests := []struct {
		name, verb, sub string
		upgrade         bool
		want, wantVerb  string
	}{
		{name: "list", verb: "list", wantVerb: "list"},
		{name: "get", verb: "get", wantVerb: "get"},
		{name: "watch", verb: "watch", want: KindWatch, wantVerb: "watch"},
		{name: "exec", verb: "create", sub: "exec", upgrade: true, want: KindExec, wantVerb: "connect"},
		{name: "exec by GET (WebSocket)", verb: "get", sub: "exec", upgrade: true, want: KindExec, wantVerb: "connect"},
		{name: "attach", verb: "create", sub: "attach", want: KindAttach, wantVerb: "connect"},
		{name: "port-forward", verb: "create", sub: "portforward", want: KindPortForward, wantVerb: "connect"},
		{name: "logs", verb: "get", sub: "log", want: KindLog, wantVerb: "get"},
		{name: "proxy verb", verb: "proxy", want: KindProxy, wantVerb: "proxy"},
		{name: "proxy subresource", verb: "get", sub: "proxy", want: KindProxy, wantVerb: "connect"},
		{name: "another upgrade", verb: "get", sub: "status", upgrade: true, want: KindProxy, wantVerb: "get"},
		{name: "non-resource POST", verb: "post", wantVerb: "create"},
		{name: "a made-up method", verb: "brew", wantVerb: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, LongRunningKind(tt.verb, tt.sub, tt.upgrade)); diff != "" {
				t.Errorf("kind (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantVerb, MetricVerb(tt.verb, tt.sub)); diff != "" {
				t.Errorf("verb label (-want +got):\n%s", diff)
			}
		})
	}
}
