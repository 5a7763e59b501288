package console

import (
	"cmp"
	"fmt"
	"html"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// Bounds of the audit page.
const (
	// auditRows is how many events the table shows, newest first.
	auditRows = 200
	// auditPages bounds the pages of the audit API read for the chart.
	auditPages = 5
	// defaultAuditSince is how far back the page looks by default.
	defaultAuditSince = "24h"
)

type auditSearch struct {
	Principal, Cluster, Verb, Decision, Type, Since string
}

type auditBody struct {
	Search auditSearch
	Events []audit.Event
	// Shown and Total: the table's events of all those read.
	Shown, Total int
	Chart        template.HTML
	From, To     time.Time
}

func (s *server) audit(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	search := auditSearch{Principal: strings.TrimSpace(q.Get("principal")), Cluster: strings.TrimSpace(q.Get("cluster")), Verb: strings.TrimSpace(q.Get("verb")),
		Decision: q.Get("decision"), Type: q.Get("type"), Since: strings.TrimSpace(q.Get("since"))}
	if search.Since == "" {
		search.Since = defaultAuditSince
	}
	data := pageData{Title: "Audit", Active: "audit"}
	now := s.cfg.Now()
	from, err := parseSince(search.Since, now)
	if err != nil {
		data.Error, data.Body = err.Error(), auditBody{Search: search}
		c.render(w, http.StatusBadRequest, "audit", data)
		return
	}
	api := url.Values{"since": {from.UTC().Format(time.RFC3339)}}
	for k, v := range map[string]string{"principal": search.Principal, "cluster": search.Cluster, "verb": search.Verb, "decision": search.Decision, "type": search.Type} {
		if v != "" {
			api.Set(k, v)
		}
	}
	events, err := c.recentAudit(api, 0, auditPages)
	if err != nil {
		if ae, ok := err.(*apiError); ok && ae.Code != http.StatusUnauthorized {
			data.Error, data.Body = ae.Message, auditBody{Search: search}
			c.render(w, ae.Code, "audit", data)
			return
		}
		c.failed(w, "Audit", "audit", err)
		return
	}
	body := auditBody{Search: search, Total: len(events), From: from, To: now}
	body.Events = events[:min(len(events), auditRows)]
	body.Shown = len(body.Events)
	body.Chart = renderChart(events, from, now)
	data.Body = body
	c.render(w, http.StatusOK, "audit", data)
}

// parseSince reads the since field: a duration back from now ("24h",
// "90m") or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("Since %q: give a duration back from now, such as 24h or 90m, or a time such as 2026-11-27T10:00:00Z.", s)
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 840, 260
	padL, padR     = 48, 260 // the legend is on the right
	padT, padB     = 16, 32
	chartBuckets   = 24
	chartSeries    = 6 // clusters shown; the busiest
	// legendChars is the longest cluster name the legend shows whole: its
	// text starts 38 units into the right pad, and 30 characters of a
	// 12-unit sans-serif font (about 7 units each at most for the
	// lower-case letters, digits and hyphens of group and cluster names)
	// end inside the chart. Longer names are shortened in the middle,
	// with the whole name in the legend's <title>.
	legendChars = 30
)

// chartColors are the series' colours (stroke attributes, which the CSP
// allows: they are not style attributes).
var chartColors = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"}

// clusterRequest reports whether e is a request to a cluster (a gateway
// request or the start of a session).
func clusterRequest(e audit.Event) bool {
	return e.Cluster != "" && (e.Type == audit.TypeRequest || e.Type == audit.TypeSessionStart)
}

// renderChart draws the requests (solid) and denials (dashed) per cluster
// in buckets of the window [from, to], as SVG. Each series is a group
// with a <title>, for screen readers and hover.
func renderChart(events []audit.Event, from, to time.Time) template.HTML {
	span := to.Sub(from)
	if span <= 0 {
		span = time.Hour
	}
	type series struct {
		id                string
		requests, denials [chartBuckets]int
		total             int
	}
	byCluster := map[string]*series{}
	for _, e := range events {
		if !clusterRequest(e) || e.Time.Before(from) || e.Time.After(to) {
			continue
		}
		sr := byCluster[e.Cluster]
		if sr == nil {
			sr = &series{id: e.Cluster}
			byCluster[e.Cluster] = sr
		}
		b := min(int(e.Time.Sub(from)*chartBuckets/span), chartBuckets-1)
		sr.requests[b]++
		if e.Decision == audit.DecisionDeny {
			sr.denials[b]++
		}
		sr.total++
	}
	var all []*series
	for _, sr := range byCluster {
		all = append(all, sr)
	}
	slices.SortFunc(all, func(a, b *series) int { return cmp.Or(cmp.Compare(b.total, a.total), cmp.Compare(a.id, b.id)) })
	all = all[:min(len(all), chartSeries)]
	peak := 1
	for _, sr := range all {
		peak = max(peak, slices.Max(sr.requests[:]))
	}
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(i int) float64 { return float64(padL) + plotW*(float64(i)+0.5)/chartBuckets }
	y := func(n int) float64 { return float64(padT) + plotH*(1-float64(n)/float64(peak)) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="audit-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" role="img" aria-labelledby="audit-chart-title">`, chartW, chartH)
	fmt.Fprintf(&b, `<title id="audit-chart-title">Requests and denials per cluster, %s to %s</title>`, from.UTC().Format("2006-01-02 15:04"), to.UTC().Format("2006-01-02 15:04 UTC"))
	// Axes and labels.
	fmt.Fprintf(&b, `<g class="axes" stroke="#888" stroke-width="1"><line x1="%d" y1="%d" x2="%d" y2="%d"/><line x1="%d" y1="%d" x2="%d" y2="%d"/></g>`,
		padL, padT, padL, chartH-padB, padL, chartH-padB, chartW-padR, chartH-padB)
	fmt.Fprintf(&b, `<g class="labels" font-size="11" fill="#444"><text x="%d" y="%.1f" text-anchor="end">%d</text><text x="%d" y="%d" text-anchor="end">0</text>`,
		padL-4, y(peak)+4, peak, padL-4, chartH-padB+4)
	for _, i := range []int{0, chartBuckets / 2, chartBuckets - 1} {
		t := from.Add(span * time.Duration(i) / chartBuckets)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`, x(i), chartH-padB+16, t.UTC().Format("01-02 15:04"))
	}
	b.WriteString(`</g>`)
	if len(all) == 0 {
		fmt.Fprintf(&b, `<text class="empty" x="%d" y="%d" text-anchor="middle" font-size="13" fill="#666">No cluster requests in this window</text>`, padL+int(plotW/2), padT+int(plotH/2))
	}
	for n, sr := range all {
		color := chartColors[n%len(chartColors)]
		name := html.EscapeString(clusterName(sr.id))
		for _, kind := range []struct {
			what   string
			counts []int
			dash   string
		}{{"requests", sr.requests[:], ""}, {"denials", sr.denials[:], ` stroke-dasharray="4 3"`}} {
			total := 0
			var pts []string
			for i, v := range kind.counts {
				total += v
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
			}
			fmt.Fprintf(&b, `<g class="series %s" data-cluster="%s"><title>%s to %s: %d</title><polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/></g>`,
				kind.what, name, kind.what, name, total, color, kind.dash, strings.Join(pts, " "))
		}
		ly := padT + 14 + n*18
		label, title := clusterName(sr.id), ""
		if short := ellipsize(label, legendChars); short != label {
			label, title = short, "<title>"+name+"</title>"
		}
		fmt.Fprintf(&b, `<g class="legend" font-size="12">%s<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d" fill="#222">%s</text></g>`,
			title, chartW-padR+12, ly-4, chartW-padR+32, ly-4, color, chartW-padR+38, ly, html.EscapeString(label))
	}
	fmt.Fprintf(&b, `<g class="legend" font-size="11" fill="#444"><text x="%d" y="%d">solid: requests, dashed: denials</text></g>`, chartW-padR+12, chartH-padB)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// ellipsize shortens s to at most n runes (n >= 3) by putting "…" in its
// middle, keeping both ends: a cluster's group and the end of its name,
// where names sharing a prefix differ.
func ellipsize(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := (n - 1) / 2
	tail := n - 1 - head
	return string(r[:head]) + "…" + string(r[len(r)-tail:])
}

// clusterName shows a cluster ID as GROUP/NAME.
func clusterName(id string) string {
	if g, n, err := store.ParseClusterID(id); err == nil {
		return g + "/" + n
	}
	return id
}
