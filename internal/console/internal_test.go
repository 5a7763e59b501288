package console

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/audit"
)

func TestReturnTo(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"a page", "/console/audit?decision=deny", "/console/audit?decision=deny"},
		{"empty", "", "/console/clusters"},
		{"elsewhere", "https://evil.example/console/", "/console/clusters"},
		{"protocol-relative", "//evil.example/console/", "/console/clusters"},
		{"double slash inside", "/console//evil.example", "/console/clusters"},
		{"backslash", "/console/\\evil.example", "/console/clusters"},
		{"the sign-in itself", "/console/auth/login", "/console/clusters"},
		{"the API", "/api/v1/clusters", "/console/clusters"},
		{"header injection", "/console/x\r\nSet-Cookie: a=b", "/console/clusters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := returnTo(tt.in); got != tt.want {
				t.Errorf("returnTo(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzReturnTo: whatever the browser sends, the redirect after sign-in
// stays in the console.
func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{"/console/audit", "//x", "/console/\\x", "/console/../api", "/console/auth/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := returnTo(in)
		if !strings.HasPrefix(got, Path+"/") || strings.Contains(got, "//") || strings.ContainsAny(got, "\\\r\n") {
			t.Errorf("returnTo(%q) = %q", in, got)
		}
	})
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"24h", now.Add(-24 * time.Hour), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"2026-11-27T10:00:00Z", time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSince(tt.in, now)
			if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
				t.Errorf("parseSince(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRenderChart(t *testing.T) {
	to := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	from := to.Add(-24 * time.Hour)
	ev := func(at time.Duration, cluster, typ, decision string) audit.Event {
		return audit.Event{Time: from.Add(at), Cluster: cluster, Type: typ, Decision: decision}
	}
	events := []audit.Event{
		ev(time.Hour, "/groups/prod/clusters/web", audit.TypeRequest, audit.DecisionAllow),
		ev(time.Hour+time.Minute, "/groups/prod/clusters/web", audit.TypeRequest, audit.DecisionDeny),
		ev(23*time.Hour, "/groups/prod/clusters/web", audit.TypeSessionStart, audit.DecisionAllow),
		ev(2*time.Hour, "/groups/dev/clusters/<b>", audit.TypeRequest, audit.DecisionAllow), // not a valid ID: shown escaped
		ev(3*time.Hour, "", audit.TypeChange, audit.DecisionAllow),                          // not a cluster request
		ev(-time.Hour, "/groups/prod/clusters/web", audit.TypeRequest, audit.DecisionAllow), // before the window
		// Names at and past what the legend shows whole.
		ev(4*time.Hour, "/groups/console-e2e/clusters/console-edge", audit.TypeRequest, audit.DecisionAllow),
		ev(5*time.Hour, "/groups/console-e2e/clusters/console-edge", audit.TypeRequest, audit.DecisionAllow),
		ev(6*time.Hour, "/groups/a-rather-long-group-name/clusters/and-an-even-longer-cluster-name", audit.TypeRequest, audit.DecisionAllow),
	}
	svg := string(renderChart(events, from, to))
	// Well-formed XML, and the series' titles.
	var titles []string
	dec := xml.NewDecoder(strings.NewReader(svg))
	inTitle := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the chart is not well-formed: %v\n%s", err, svg)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			inTitle = tok.Name.Local == "title"
		case xml.CharData:
			if inTitle {
				titles = append(titles, string(tok))
			}
		case xml.EndElement:
			inTitle = false
		}
	}
	const long = "a-rather-long-group-name/and-an-even-longer-cluster-name"
	want := []string{"Requests and denials per cluster, 2026-11-26 12:00 to 2026-11-27 12:00 UTC",
		"requests to prod/web: 3", "denials to prod/web: 1",
		"requests to console-e2e/console-edge: 2", "denials to console-e2e/console-edge: 0",
		"requests to " + long + ": 1", "denials to " + long + ": 0", long, // the shortened legend's title
		"requests to /groups/dev/clusters/<b>: 1", "denials to /groups/dev/clusters/<b>: 0"}
	if diff := cmp.Diff(want, titles); diff != "" {
		t.Errorf("chart titles (-want +got):\n%s", diff)
	}
	if strings.Contains(svg, "<b>") {
		t.Error("a cluster name is not escaped")
	}

	// The legend: each cluster's name, whole up to legendChars, and every
	// label ends inside the chart (at most 7 units a character at font
	// size 12).
	var doc struct {
		ViewBox string `xml:"viewBox,attr"`
		Groups  []struct {
			Class string `xml:"class,attr"`
			Title string `xml:"title"`
			Texts []struct {
				X    float64 `xml:"x,attr"`
				Body string  `xml:",chardata"`
			} `xml:"text"`
		} `xml:"g"`
	}
	if err := xml.Unmarshal([]byte(svg), &doc); err != nil {
		t.Fatal(err)
	}
	var width float64
	if _, err := fmt.Sscanf(doc.ViewBox, "0 0 %g", &width); err != nil {
		t.Fatalf("viewBox %q: %v", doc.ViewBox, err)
	}
	type entry struct{ Label, Title string }
	var legend []entry
	for _, g := range doc.Groups {
		if g.Class != "legend" {
			continue
		}
		for _, txt := range g.Texts {
			if end := txt.X + 7*float64(utf8.RuneCountInString(txt.Body)); end > width {
				t.Errorf("legend %q ends at about %.0f, past the chart's width %.0f", txt.Body, end, width)
			}
		}
		if len(g.Texts) == 1 && !strings.HasPrefix(g.Texts[0].Body, "solid") {
			legend = append(legend, entry{g.Texts[0].Body, g.Title})
		}
	}
	wantLegend := []entry{{"prod/web", ""}, {"console-e2e/console-edge", ""}, {"a-rather-long-…er-cluster-name", long}, {"/groups/dev/clusters/<b>", ""}}
	if diff := cmp.Diff(wantLegend, legend); diff != "" {
		t.Errorf("chart legend (-want +got):\n%s", diff)
	}
}

func TestEllipsize(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		want     string
	}{
		{"short", "prod/web", 10, "prod/web"},
		{"exactly n", "0123456789", 10, "0123456789"},
		{"one over", "0123456789a", 10, "0123…6789a"},
		{"runes, not bytes", "ééééééééééé", 5, "éé…éé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ellipsize(tt.in, tt.n); got != tt.want || utf8.RuneCountInString(got) > tt.n {
				t.Errorf("ellipsize(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
