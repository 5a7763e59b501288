package bench

import (
	"context"
	"fmt"
	"io"
)

// Options configure a run of the sections.
type Options struct {
	// Tether is the tether binary (BuildTether).
	Tether string
	// Dir is the run's working directory; each section makes its own
	// subdirectory.
	Dir string
	// Quick shrinks every scale (durations, sizes, counts) so the harness
	// itself can be tested in seconds; the figures are then not the ones
	// the targets speak of.
	Quick bool
	// Log receives progress lines.
	Log io.Writer
}

// Logf writes a progress line.
func (o Options) Logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}

// Section measures one group of figures and adds them to r. It starts what
// it needs and stops it before returning.
type Section struct {
	Name string
	Run  func(ctx context.Context, o Options, r *Report) error
}
