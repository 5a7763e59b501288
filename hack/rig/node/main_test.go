package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

func TestParseFlags(t *testing.T) {
	full := []string{
		"--kubeconfig", "kc", "--node-name", "n1", "--node-ip", "10.99.0.1", "--listen-addr", "10.99.0.1:10250",
		"--tls-cert-file", "c", "--tls-private-key-file", "k", "--client-ca-file", "ca", "--pods-dir", "pods",
	}
	without := func(flag string) []string {
		var out []string
		for i := 0; i < len(full); i += 2 {
			if full[i] != flag {
				out = append(out, full[i], full[i+1])
			}
		}
		return out
	}
	with := func(flag, value string) []string {
		out := append([]string(nil), full...)
		for i := 0; i < len(out); i += 2 {
			if out[i] == flag {
				out[i+1] = value
			}
		}
		return out
	}
	tests := []struct {
		name     string
		args     []string
		wantExit int // 0: parses
	}{
		{name: "all flags", args: full},
		{name: "missing pods dir", args: without("--pods-dir"), wantExit: 2},
		{name: "bad node IP", args: with("--node-ip", "ten"), wantExit: 2},
		{name: "listen address without port", args: with("--listen-addr", "10.99.0.1"), wantExit: 2},
		{name: "unknown flag", args: append(full, "--verbose"), wantExit: 2},
		{name: "extra argument", args: append(full, "extra"), wantExit: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			got := 0
			if err != nil {
				got = exitCode(err)
			}
			if diff := cmp.Diff(tc.wantExit, got); diff != "" {
				t.Errorf("exit code (-want +got):\n%s (err %v)", diff, err)
			}
		})
	}
}

func TestNodeSpec(t *testing.T) {
	o := options{nodeName: "rig-node", nodeIP: netip.MustParseAddr("10.99.0.1"), listenPort: 10250}
	n := nodeSpec(o)
	type summary struct {
		Labels    map[string]string
		Addresses []corev1.NodeAddress
		Port      int32
		CPU       string
		Memory    string
		Pods      string
		Ready     corev1.ConditionStatus
		Taints    []corev1.Taint
	}
	got := summary{
		Labels:    n.Labels,
		Addresses: n.Status.Addresses,
		Port:      n.Status.DaemonEndpoints.KubeletEndpoint.Port,
		CPU:       n.Status.Allocatable.Cpu().String(),
		Memory:    n.Status.Allocatable.Memory().String(),
		Pods:      n.Status.Allocatable.Pods().String(),
		Ready:     n.Status.Conditions[0].Status,
		Taints:    n.Spec.Taints,
	}
	want := summary{
		Labels: map[string]string{
			"type":                   "virtual-kubelet",
			"kubernetes.io/hostname": "rig-node",
			"kubernetes.io/os":       "linux",
			"kubernetes.io/arch":     n.Labels["kubernetes.io/arch"],
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.99.0.1"},
			{Type: corev1.NodeHostName, Address: "rig-node"},
		},
		Port:   10250,
		CPU:    "8",
		Memory: "16Gi",
		Pods:   "110",
		Ready:  corev1.ConditionTrue,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
}

// fakeAuth knows two bearer tokens: "allowed" (user alice, who may use the
// node's proxy subresource) and "denied" (user bob).
type fakeAuth struct {
	nodeutil.NodeRequestAttr
	authorizer.AuthorizerFunc
}

func (fakeAuth) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	switch r.Header.Get("Authorization") {
	case "Bearer allowed":
		return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, true, nil
	case "Bearer denied":
		return &authenticator.Response{User: &user.DefaultInfo{Name: "bob"}}, true, nil
	}
	return nil, false, nil
}

func fakeAuthorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetUser().GetName() == "alice" && a.GetResource() == "nodes" && a.GetSubresource() == "proxy" && a.GetName() == "rig-node" {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "no rule", nil
}

func TestAuthFilter(t *testing.T) {
	filter := &authFilter{auth: fakeAuth{nodeutil.NodeRequestAttr{NodeName: "rig-node"}, fakeAuthorize}, log: slog.New(slog.DiscardHandler)}
	h := filter.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	type result struct {
		Code   int
		Reason metav1.StatusReason
		Body   string
	}
	tests := []struct {
		name  string
		token string
		path  string
		want  result
	}{
		{name: "no credentials", path: "/pods", want: result{Code: 401, Reason: metav1.StatusReasonUnauthorized}},
		{name: "unknown token", token: "forged", path: "/pods", want: result{Code: 401, Reason: metav1.StatusReasonUnauthorized}},
		{name: "authenticated but not authorized", token: "denied", path: "/exec/ns/p/c", want: result{Code: 403, Reason: metav1.StatusReasonForbidden}},
		{name: "authorized for proxy", token: "allowed", path: "/exec/ns/p/c", want: result{Code: 200, Body: "ok"}},
		{name: "proxy does not cover stats", token: "allowed", path: "/stats/summary", want: result{Code: 403, Reason: metav1.StatusReasonForbidden}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rr := httptest.NewRecorder()
			h.ServeHTTP(rr, req)
			got := result{Code: rr.Code}
			var st metav1.Status
			if strings.HasPrefix(rr.Header().Get("Content-Type"), "application/json") && json.Unmarshal(rr.Body.Bytes(), &st) == nil {
				got.Reason = st.Reason
			} else {
				got.Body = rr.Body.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}
