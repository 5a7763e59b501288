// Command bench is `make bench`: Tether's performance harness. It builds
// tether, runs every section (or those named with -only) against the
// direct baseline measured in the same run, prints one Markdown table and
// writes the figures as JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/test/bench"
)

func main() {
	out := flag.String("out", "bench.json", "write the figures here as JSON")
	only := flag.String("only", "", "comma-separated sections to run (default all): "+strings.Join(names(), ","))
	quick := flag.Bool("quick", false, "small scales: check the harness, not the figures")
	keep := flag.Bool("keep", false, "keep the working directory (logs of hub and agents)")
	flag.Parse()
	if err := run(*out, *only, *quick, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func names() []string {
	var n []string
	for _, s := range bench.All {
		n = append(n, s.Name)
	}
	return n
}

func run(out, only string, quick, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sections []bench.Section
	want := strings.Split(only, ",")
	for _, s := range bench.All {
		if only == "" || slices.Contains(want, s.Name) {
			sections = append(sections, s)
		}
	}
	for _, w := range want {
		if only != "" && !slices.Contains(names(), w) {
			return fmt.Errorf("no section %q; the sections are %s", w, strings.Join(names(), ", "))
		}
	}
	dir, err := bench.MkdirTemp()
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintln(os.Stderr, "working directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	commit, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	r := bench.NewReport(strings.TrimSpace(string(commit)))
	o := bench.Options{Dir: dir, Quick: quick, Log: os.Stderr}
	o.Logf("building tether")
	if o.Tether, err = bench.BuildTether(ctx, dir); err != nil {
		return err
	}
	for _, s := range sections {
		began := time.Now()
		o.Logf("== %s", s.Name)
		if err := s.Run(ctx, o, r); err != nil {
			r.Fail(s.Name, err)
			o.Logf("%s failed: %v", s.Name, err)
		}
		o.Logf("%s took %s", s.Name, time.Since(began).Round(100*time.Millisecond))
		if ctx.Err() != nil {
			break
		}
	}
	r.Duration = time.Since(r.Started)
	r.WriteTable(os.Stdout)
	if err := r.WriteJSON(out); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "figures written to", out)
	if len(r.Errors) > 0 {
		return fmt.Errorf("%d sections could not be measured", len(r.Errors))
	}
	return ctx.Err()
}
