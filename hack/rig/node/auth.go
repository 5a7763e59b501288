package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/virtual-kubelet/virtual-kubelet/node/nodeutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/kubernetes"
)

// authFilter authenticates and authorizes kubelet API requests the way the
// kubelet's webhook mode does.
type authFilter struct {
	auth nodeutil.Auth
	log  *slog.Logger
}

// newAuthFilter builds the filter: client certificates verified against the
// CA bundle in clientCAFile, bearer tokens through TokenReview, no anonymous
// access, and decisions by SubjectAccessReview on nodes/<subresource>
// nodeName. Answers are cached as the kubelet does (2 min for tokens, 5 min
// for allowed and 30 s for denied requests).
func newAuthFilter(client kubernetes.Interface, nodeName, clientCAFile string, logger *slog.Logger) (*authFilter, error) {
	caPEM, err := os.ReadFile(clientCAFile)
	if err != nil {
		return nil, fmt.Errorf("read client CA: %w", err)
	}
	ca, err := dynamiccertificates.NewStaticCAContent("client-ca", caPEM)
	if err != nil {
		return nil, fmt.Errorf("client CA %s: %w", clientCAFile, err)
	}
	auth, err := nodeutil.WebhookAuth(client, nodeName, func(cfg *nodeutil.WebhookAuthConfig) error {
		cfg.AuthnConfig.ClientCertificateCAContentProvider = ca
		cfg.AuthnConfig.Anonymous = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kubelet API auth: %w", err)
	}
	return &authFilter{auth: auth, log: logger}, nil
}

// wrap returns next behind authentication and authorization.
func (a *authFilter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, ok, err := a.auth.AuthenticateRequest(r)
		if err != nil || !ok {
			a.log.Info("request not authenticated", "remote_addr", r.RemoteAddr, "path", r.URL.Path, "err", err)
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized,
				"Unauthorized: present a client certificate signed by the node's client CA or a bearer token")
			return
		}
		attrs := a.auth.GetRequestAttributes(resp.User, r)
		decision, reason, err := a.auth.Authorize(r.Context(), attrs)
		desc := fmt.Sprintf("user=%s, verb=%s, resource=%s, subresource=%s", attrs.GetUser().GetName(),
			attrs.GetVerb(), attrs.GetResource(), attrs.GetSubresource())
		if err != nil {
			a.log.Warn("authorization failed", "principal", resp.User.GetName(), "path", r.URL.Path, "err", err)
			writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError,
				fmt.Sprintf("Authorization error (%s)", desc))
			return
		}
		if decision != authorizer.DecisionAllow {
			a.log.Info("request forbidden", "principal", resp.User.GetName(), "path", r.URL.Path, "reason", reason)
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				fmt.Sprintf("Forbidden (%s): grant %s on nodes/%s %s", desc, attrs.GetVerb(), attrs.GetSubresource(), attrs.GetName()))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeStatus writes a Kubernetes Status error.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   reason,
		Code:     int32(code),
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(st)
}
