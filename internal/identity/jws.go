package identity

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"
)

// MaxTokenSize bounds a caller's token, checked before anything is
// decoded. Entra tokens with 200 inline groups stay under 16 KiB.
const MaxTokenSize = 64 << 10

// compactJWS is a JWS in compact serialization, split and decoded but not
// verified. Nothing in it may be acted on before the signature verifies,
// except to choose the key that verifies it.
type compactJWS struct {
	signingInput string // BASE64URL(header) "." BASE64URL(payload), as received
	header       map[string]json.RawMessage
	payload      []byte
	signature    []byte
}

// splitCompact parses HEADER.PAYLOAD.SIGNATURE. It accepts only the
// base64url alphabet and exactly two dots, so whitespace, padding and the
// JSON serialization are refused before any decoding. The header must be a
// JSON object; the payload is returned as bytes.
func splitCompact(token string) (compactJWS, error) {
	dots := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return compactJWS{}, refuse(ErrMalformed, "not a compact JWS: byte %q at offset %d", c, i)
		}
	}
	if dots != 2 {
		return compactJWS{}, refuse(ErrMalformed, "not a compact JWS: want 3 dot-separated parts, got %d", dots+1)
	}
	h, rest, _ := strings.Cut(token, ".")
	p, s, _ := strings.Cut(rest, ".")
	var j compactJWS
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || len(hb) == 0 {
		return compactJWS{}, refuse(ErrMalformed, "header is not base64url")
	}
	if err := json.Unmarshal(hb, &j.header); err != nil || j.header == nil {
		return compactJWS{}, refuse(ErrMalformed, "header is not a JSON object")
	}
	if j.payload, err = base64.RawURLEncoding.DecodeString(p); err != nil {
		return compactJWS{}, refuse(ErrMalformed, "payload is not base64url")
	}
	if j.signature, err = base64.RawURLEncoding.DecodeString(s); err != nil {
		return compactJWS{}, refuse(ErrMalformed, "signature is not base64url")
	}
	j.signingInput = token[:len(h)+1+len(p)]
	return j, nil
}

// claimSet is a JSON object read with exact, case-sensitive member names
// (encoding/json matches struct fields case-insensitively, which would let
// an "OID" member stand in for "oid").
type claimSet map[string]json.RawMessage

func decodeClaimSet(b []byte) (claimSet, error) {
	var c claimSet
	if err := json.Unmarshal(b, &c); err != nil || c == nil {
		return nil, refuse(ErrMalformed, "claims are not a JSON object")
	}
	return c, nil
}

// has reports whether the member is present and not null.
func (c claimSet) has(name string) bool {
	v, ok := c[name]
	return ok && string(v) != "null"
}

// str returns a string member; absent or null gives "", false.
func (c claimSet) str(name string) (string, bool, error) {
	if !c.has(name) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(c[name], &s); err != nil {
		return "", false, refuse(ErrMalformed, "claim %s is not a string", quoteBounded(name))
	}
	return s, true, nil
}

// stringList returns a member that is a string or an array of strings.
func (c claimSet) stringList(name string) ([]string, error) {
	if !c.has(name) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(c[name], &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(c[name], &many); err != nil {
		return nil, refuse(ErrMalformed, "claim %s is not a string or an array of strings", quoteBounded(name))
	}
	return many, nil
}

// numericDate returns a NumericDate member (seconds since the epoch, integer or
// fractional, RFC 7519 section 2).
func (c claimSet) numericDate(name string) (time.Time, bool, error) {
	if !c.has(name) {
		return time.Time{}, false, nil
	}
	var f float64
	if err := json.Unmarshal(c[name], &f); err != nil || f < 0 || f > maxNumericDate || math.IsNaN(f) {
		return time.Time{}, false, refuse(ErrMalformed, "claim %s is not a NumericDate", quoteBounded(name))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// maxNumericDate is the year 10000, far beyond any real token, small enough
// that every arithmetic on it stays exact.
const maxNumericDate = 253402300800

func headerString(h map[string]json.RawMessage, name string) (string, error) {
	v, ok := h[name]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", refuse(ErrMalformed, "header %s is not a string", name)
	}
	return s, nil
}

func describeAlg(alg string) string {
	if alg == "" {
		return "no alg header"
	}
	return fmt.Sprintf("alg %s", quoteBounded(alg))
}
