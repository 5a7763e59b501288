package apistatus

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		wantReason metav1.StatusReason
	}{
		{name: "unauthorized", code: http.StatusUnauthorized, wantReason: metav1.StatusReasonUnauthorized},
		{name: "forbidden", code: http.StatusForbidden, wantReason: metav1.StatusReasonForbidden},
		{name: "agent offline", code: http.StatusServiceUnavailable, wantReason: metav1.StatusReasonServiceUnavailable},
		{name: "bad gateway is internal", code: http.StatusBadGateway, wantReason: metav1.StatusReasonInternalError},
		{name: "gone", code: http.StatusGone, wantReason: metav1.StatusReasonGone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, tt.code, "what happened; what to do")
			if diff := cmp.Diff(tt.code, rec.Code); diff != "" {
				t.Errorf("code (-want +got):\n%s", diff)
			}
			var got metav1.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			want := metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   "Failure", Message: "what happened; what to do", Reason: tt.wantReason, Code: int32(tt.code),
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}
