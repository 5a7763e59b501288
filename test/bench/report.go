// Package bench is Tether's performance harness (make bench): it starts a
// trivial HTTPS backend, the real `tether hub` and `tether agent` binaries
// on loopback, and measures the data path against the direct connection to
// the same backend in the same run, then many idle streams and agents, a
// reconnect storm, and real Kubernetes (docs/performance.md).
//
// Each measurement is a Figure; Report prints them as one table and writes
// them as JSON, so runs can be compared across commits.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured figure: the tunnel's value, the direct baseline
// measured in the same run when there is one, and the target it is held
// against.
type Figure struct {
	// Section groups figures: "requests", "bulk", "fairness", "streams",
	// "agents", "reconnect", "kubernetes".
	Section string `json:"section"`
	// Name says what was measured, e.g. "64 connections: requests/s".
	Name string `json:"name"`
	// Unit of Direct and Value: "req/s", "µs", "MiB/s", "KiB", "s", ...
	Unit string `json:"unit"`
	// Direct is the baseline without Tether; nil when there is none.
	Direct *float64 `json:"direct,omitempty"`
	// Value is the figure through Tether.
	Value float64 `json:"value"`
	// Ratio is Value/Direct when Direct is set (and not zero).
	Ratio *float64 `json:"ratio,omitempty"`
	// Target is the target in words (">= 0.35x direct"); empty
	// for figures given as context only.
	Target string `json:"target,omitempty"`
	// Met says whether Target is met; nil without a target.
	Met *bool `json:"met,omitempty"`
	// Note explains the figure briefly (how it was taken).
	Note string `json:"note,omitempty"`
}

// Report is the result of one run.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"durationNs"`
	Commit   string        `json:"commit,omitempty"`
	GoOS     string        `json:"goos"`
	GoArch   string        `json:"goarch"`
	CPUs     int           `json:"cpus"`
	Figures  []Figure      `json:"figures"`
	// Errors are sections that could not be measured, with why.
	Errors []string `json:"errors,omitempty"`
}

// NewReport starts a report.
func NewReport(commit string) *Report {
	return &Report{Started: time.Now(), Commit: commit, GoOS: runtime.GOOS, GoArch: runtime.GOARCH, CPUs: runtime.NumCPU()}
}

// Add appends figures.
func (r *Report) Add(f ...Figure) { r.Figures = append(r.Figures, f...) }

// Fail records a section that could not be measured.
func (r *Report) Fail(section string, err error) {
	r.Errors = append(r.Errors, fmt.Sprintf("%s: %v", section, err))
}

// Compared is a figure with a direct baseline; ratio = value/direct.
func Compared(section, name, unit string, direct, value float64) Figure {
	f := Figure{Section: section, Name: name, Unit: unit, Direct: &direct, Value: value}
	if direct != 0 {
		r := value / direct
		f.Ratio = &r
	}
	return f
}

// Plain is a figure without a baseline.
func Plain(section, name, unit string, value float64) Figure {
	return Figure{Section: section, Name: name, Unit: unit, Value: value}
}

// AtLeast sets f's target to "value >= min" (on Ratio when ratio is true).
func (f Figure) AtLeast(min float64, ratio bool) Figure {
	v, what := f.Value, trim(min)+" "+f.Unit
	if ratio {
		v, what = f.ratio(), trim(min)+"x direct"
	}
	met := v >= min
	f.Target, f.Met = ">= "+what, &met
	return f
}

// AtMost sets f's target to "value <= max" (on Ratio when ratio is true).
func (f Figure) AtMost(max float64, ratio bool) Figure {
	v, what := f.Value, trim(max)+" "+f.Unit
	if ratio {
		v, what = f.ratio(), trim(max)+"x direct"
	}
	met := v <= max
	f.Target, f.Met = "<= "+what, &met
	return f
}

// Target sets a target checked elsewhere (e.g. on a difference).
func (f Figure) WithTarget(target string, met bool) Figure {
	f.Target, f.Met = target, &met
	return f
}

// WithNote sets the note.
func (f Figure) WithNote(note string) Figure {
	f.Note = note
	return f
}

func (f Figure) ratio() float64 {
	if f.Ratio == nil {
		return math.NaN()
	}
	return *f.Ratio
}

func trim(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%.2f", v), ".00") }

// format prints v with a precision that suits its size.
func format(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// WriteTable prints the report as one table (Markdown, so the README can
// show it as it is).
func (r *Report) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| section\t| figure\t| unit\t| direct\t| tether\t| ratio\t| target\t| met\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---:\t|---:\t|---:\t|---\t|---\t|")
	for _, f := range r.Figures {
		direct, ratio, met := "", "", ""
		if f.Direct != nil {
			direct = format(*f.Direct)
		}
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *f.Ratio)
		}
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*f.Met]
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", f.Section, f.Name, f.Unit, direct, format(f.Value), ratio, f.Target, met)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintf(w, "\nnot measured: %s\n", e)
	}
	fmt.Fprintf(w, "\n%d CPUs, %s/%s, %s, commit %s\n", r.CPUs, r.GoOS, r.GoArch, r.Duration.Round(time.Second), r.Commit)
}

// WriteJSON writes the report to path (whole or not at all).
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
