package tunnel

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// recorder records each write it is given.
type recorder struct {
	bytes.Buffer
	writes []int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, len(p))
	return r.Buffer.Write(p)
}
func (r *recorder) Close() error { return nil }

// TestFrameWriter writes frames of every length class, masked or not, cut
// into pieces at random: every write reaching the connection ends on a
// frame boundary, and the bytes are exactly those written.
func TestFrameWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var stream []byte
		var ends []int // offsets where frames end
		for range 1 + rng.IntN(6) {
			n := []int{0, 1, 125, 126, 4000, 65535, 65536 + 12, 70000}[rng.IntN(8)]
			stream = append(stream, wsFrame(0x2, make([]byte, n), rng.IntN(2) == 0)...)
			ends = append(ends, len(stream))
		}
		rec := &recorder{}
		w := &frameWriter{ReadWriteCloser: rec}
		for rest := stream; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(5000))
			if n, err := w.Write(rest[:k]); err != nil || n != k {
				t.Fatalf("round %d: Write = %d, %v; want %d", round, n, err, k)
			}
			rest = rest[k:]
		}
		if !bytes.Equal(rec.Bytes(), stream) {
			t.Fatalf("round %d: %d bytes reached the connection, want the %d written", round, rec.Len(), len(stream))
		}
		off := 0
		for _, n := range rec.writes {
			off += n
			if !containsInt(ends, off) {
				t.Fatalf("round %d: a write ended at %d, inside a frame (frames end at %v)", round, off, ends)
			}
		}
	}
}

// TestFrameWriterHoldsNoMore: a frame larger than maxHeldFrame is passed on
// in pieces rather than held whole.
func TestFrameWriterHoldsNoMore(t *testing.T) {
	rec := &recorder{}
	w := &frameWriter{ReadWriteCloser: rec}
	big := wsFrame(0x2, make([]byte, 3*maxHeldFrame), true)
	for rest := big; len(rest) > 0; {
		k := min(len(rest), 4096)
		w.Write(rest[:k])
		rest = rest[k:]
		if len(w.held) > maxHeldFrame+4096 {
			t.Fatalf("holding %d bytes, more than %d", len(w.held), maxHeldFrame+4096)
		}
	}
	if !bytes.Equal(rec.Bytes(), big) {
		t.Fatal("the bytes of a large frame were not passed on whole")
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
