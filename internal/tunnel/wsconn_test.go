package tunnel

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func frame(typ byte, streamID, length uint32, payload []byte) []byte {
	b := make([]byte, yamuxHeaderSize, yamuxHeaderSize+len(payload))
	b[0] = yamuxVersion
	b[1] = typ
	binary.BigEndian.PutUint32(b[4:8], streamID)
	binary.BigEndian.PutUint32(b[8:12], length)
	return append(b, payload...)
}

func concat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// goAways counts the GoAways a frameWatcher reports when b arrives in reads
// of at most chunk bytes.
func goAways(b []byte, chunk int) int {
	n := 0
	w := frameWatcher{onGoAway: func() { n++ }}
	for len(b) > 0 {
		k := min(chunk, len(b))
		w.scan(b[:k])
		b = b[k:]
	}
	return n
}

func TestFrameWatcher(t *testing.T) {
	// A data frame whose payload looks like a GoAway header: must be skipped.
	decoy := frame(yamuxTypeGoAway, 0, 0, nil)
	tests := []struct {
		name   string
		stream []byte
		want   int
	}{
		{name: "nothing", stream: nil, want: 0},
		{name: "normal go away", stream: frame(yamuxTypeGoAway, 0, 0, nil), want: 1},
		{name: "protocol error go away", stream: frame(yamuxTypeGoAway, 0, 1, nil), want: 0},
		{name: "ping and window update", stream: concat(frame(2, 0, 7, nil), frame(1, 1, 1<<20, nil)), want: 0},
		{name: "decoy in a data payload", stream: frame(yamuxTypeData, 1, uint32(len(decoy)), decoy), want: 0},
		{
			name:   "after data",
			stream: concat(frame(yamuxTypeData, 1, 3, []byte("abc")), frame(yamuxTypeGoAway, 0, 0, nil)),
			want:   1,
		},
		{name: "bad version stops watching", stream: concat([]byte{1}, make([]byte, 11), frame(yamuxTypeGoAway, 0, 0, nil)), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for _, chunk := range []int{1, 5, 12, 13, 1 << 20} {
				got = append(got, goAways(tt.stream, chunk))
			}
			want := []int{tt.want, tt.want, tt.want, tt.want, tt.want}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("GoAways seen, by read size 1, 5, 12, 13, 1 MiB (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzFrameWatcher: what the watcher sees must not depend on how the byte
// stream is cut into reads.
func FuzzFrameWatcher(f *testing.F) {
	f.Add(concat(frame(yamuxTypeData, 1, 3, []byte("abc")), frame(yamuxTypeGoAway, 0, 0, nil)), uint8(5))
	f.Add(frame(yamuxTypeData, 1, 1<<31, nil), uint8(1))
	f.Add([]byte{0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, uint8(3))
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole := goAways(stream, len(stream)+1)
		cut := goAways(stream, int(chunk)+1)
		if whole != cut {
			t.Errorf("GoAways: %d read whole, %d in reads of %d", whole, cut, int(chunk)+1)
		}
	})
}
