// Package apistatus writes errors as Kubernetes Status objects, the only
// error shape kubectl turns into "Error from server (Reason): message".
// Every HTTP error Tether returns on a path kubectl uses goes through here.
package apistatus

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Status builds the Status object for an HTTP code. The reason is derived
// from the code (Unauthorized, Forbidden, NotFound, ServiceUnavailable, ...).
func Status(code int, message string) metav1.Status {
	return metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reasonFor(code),
		Code:     int32(code),
	}
}

// Write answers with Status(code, message) as JSON.
func Write(w http.ResponseWriter, code int, message string) {
	write(w, Status(code, message))
}

func write(w http.ResponseWriter, st metav1.Status) {
	b, err := json.Marshal(st)
	if err != nil { // a Status always marshals; keep the code regardless
		http.Error(w, st.Message, int(st.Code))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(int(st.Code))
	w.Write(append(b, '\n'))
}

// WriteRetry answers like Write, and asks the client to retry after the
// given time (at least a second): a Retry-After header, which client-go
// honours by retrying a 5xx or 429 on its own, and the Status's
// retryAfterSeconds.
func WriteRetry(w http.ResponseWriter, code int, message string, after time.Duration) {
	secs := max(int32((after+time.Second-1)/time.Second), 1)
	st := Status(code, message)
	st.Details = &metav1.StatusDetails{RetryAfterSeconds: secs}
	w.Header().Set("Retry-After", strconv.Itoa(int(secs)))
	write(w, st)
}

func reasonFor(code int) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusUnauthorized:
		return metav1.StatusReasonUnauthorized
	case http.StatusForbidden:
		return metav1.StatusReasonForbidden
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	case http.StatusConflict:
		return metav1.StatusReasonConflict
	case http.StatusGone:
		return metav1.StatusReasonGone
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusServiceUnavailable:
		return metav1.StatusReasonServiceUnavailable
	case http.StatusGatewayTimeout:
		return metav1.StatusReasonTimeout
	case http.StatusMethodNotAllowed:
		return metav1.StatusReasonMethodNotAllowed
	}
	if code >= 500 {
		return metav1.StatusReasonInternalError
	}
	return metav1.StatusReasonUnknown
}
