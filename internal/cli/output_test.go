package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/google/go-cmp/cmp"
)

// outputSample has its fields out of alphabetical order, so that tests see
// struct field order rather than sorted keys.
type outputSample struct {
	Name   string       `json:"name"`
	ID     string       `json:"id"`
	Count  int64        `json:"count"`
	Ready  bool         `json:"ready"`
	Note   *string      `json:"note"`
	Inner  *outputInner `json:"inner,omitempty"`
	Tags   []string     `json:"tags,omitempty"`
	Detail string       `json:"detail,omitempty"`
}

type outputInner struct {
	Zone string `json:"zone"`
}

var outputSamples = []outputSample{
	{Name: "a", ID: "id-a", Count: 1000000, Ready: true},
	{Name: "b", ID: "id-b", Count: 2, Inner: &outputInner{Zone: "z1"}, Tags: []string{"x", "y"}},
}

// renderOutput runs print with -o format and --query query on v; the table
// function writes "caller table".
func renderOutput(format, query string, v any) (string, error) {
	o := outputFlag{format: format, query: query}
	var b bytes.Buffer
	err := o.print(&b, v, func(w *tabwriter.Writer) { fmt.Fprintln(w, "caller table") })
	return b.String(), err
}

func TestOutputPrint(t *testing.T) {
	tests := []struct {
		name   string
		format string
		query  string
		v      any
		want   string
	}{
		{name: "tsv string", format: "tsv", v: "abc", want: "abc\n"},
		{name: "tsv integer", format: "tsv", v: 1000000, want: "1000000\n"},
		{name: "tsv fraction", format: "tsv", v: 2.5, want: "2.5\n"},
		{name: "tsv bool", format: "tsv", v: false, want: "false\n"},
		{name: "tsv null prints nothing", format: "tsv", v: nil, want: ""},
		{name: "tsv object in struct field order", format: "tsv", v: outputSamples[0], want: "a\tid-a\t1000000\ttrue\t\n"},
		{name: "tsv list of objects, nested object empty, nested list its length", format: "tsv", v: outputSamples,
			want: "a\tid-a\t1000000\ttrue\t\nb\tid-b\t2\tfalse\t\t\t2\n"},
		{name: "tsv list of scalars", format: "tsv", v: []string{"x", "y"}, want: "x\ny\n"},
		{name: "tsv keeps tabs and newlines", format: "tsv", v: []string{"a\tb", "c\nd"}, want: "a\tb\nc\nd\n"},
		{name: "tsv map in sorted order", format: "tsv", v: map[string]int{"b": 2, "a": 1}, want: "1\t2\n"},
		{name: "tsv exact big integer without query", format: "tsv", v: int64(9007199254740993), want: "9007199254740993\n"},
		{name: "query id", format: "tsv", query: "id", v: outputSamples[0], want: "id-a\n"},
		{name: "query id json", format: "json", query: "id", v: outputSamples[0], want: "\"id-a\"\n"},
		{name: "query names", format: "tsv", query: "[].name", v: outputSamples, want: "a\nb\n"},
		{name: "query integer", format: "tsv", query: "[].count", v: outputSamples, want: "1000000\n2\n"},
		{name: "query nested field", format: "tsv", query: "[].inner.zone", v: outputSamples, want: "z1\n"},
		{name: "query filter", format: "tsv", query: "[?count > `10`].name", v: outputSamples, want: "a\n"},
		{name: "query multiselect list", format: "tsv", query: "[].[name, id, ready]", v: outputSamples,
			want: "a\tid-a\ttrue\nb\tid-b\tfalse\n"},
		{name: "query multiselect hash in expression order", format: "tsv", query: "[].{id: id, n: name}", v: outputSamples,
			want: "id-a\ta\nid-b\tb\n"},
		{name: "query multiselect hash with quoted keys", format: "tsv", query: `{"z z": name, a: id}`, v: outputSamples[0],
			want: "a\tid-a\n"},
		{name: "query object keeps struct field order", format: "tsv", query: "[1]", v: outputSamples,
			want: "b\tid-b\t2\tfalse\t\t\t2\n"},
		{name: "query function object sorted", format: "tsv", query: "merge(inner, {b: name})", v: outputSamples[1],
			want: "b\tz1\n"},
		{name: "query null prints nothing", format: "tsv", query: "missing", v: outputSamples[0], want: ""},
		{name: "query null json prints nothing", format: "json", query: "missing", v: outputSamples[0], want: ""},
		{name: "query hash json in expression order", format: "json", query: "{n: name, c: count}", v: outputSamples[0],
			want: "{\n  \"n\": \"a\",\n  \"c\": 1000000\n}\n"},
		{name: "query yaml", format: "yaml", query: "[].name", v: outputSamples, want: "- a\n- b\n"},
		{name: "query table list of objects", format: "table", query: "[].{name: name, count: count, tags: tags}", v: outputSamples,
			want: "Name  Count\na     1000000\nb     2\n"},
		{name: "query table object", format: "table", query: "{id: id, ready: ready}", v: outputSamples[0],
			want: "Id    Ready\nid-a  true\n"},
		{name: "query table list of scalars", format: "table", query: "[].name", v: outputSamples, want: "Result\na\nb\n"},
		{name: "query table list of lists", format: "table", query: "[].[name, count]", v: outputSamples,
			want: "Column1  Column2\na        1000000\nb        2\n"},
		{name: "query table scalar alone", format: "table", query: "[0].name", v: outputSamples, want: "a\n"},
		{name: "query table empty list", format: "table", query: "[?count > `5000000`]", v: outputSamples, want: ""},
		{name: "query table unchanged calls caller", format: "table", query: "@", v: outputSamples, want: "caller table\n"},
		{name: "table calls caller", format: "table", v: outputSamples, want: "caller table\n"},
		{name: "json unchanged", format: "json", v: outputSamples[0],
			want: "{\n  \"name\": \"a\",\n  \"id\": \"id-a\",\n  \"count\": 1000000,\n  \"ready\": true,\n  \"note\": null\n}\n"},
		{name: "yaml unchanged", format: "yaml", v: outputInner{Zone: "z"}, want: "zone: z\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderOutput(tt.format, tt.query, tt.v)
			if err != nil {
				t.Fatalf("print: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOutputValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		format string
		query  string
		want   string // in the message
	}{
		{name: "unknown format", format: "xml", want: `--output "xml"`},
		{name: "unclosed bracket", format: "tsv", query: "foo[", want: `--query "foo[": SyntaxError`},
		{name: "hash without value", format: "json", query: "{a: }", want: `--query "{a: }": SyntaxError`},
		{name: "bad token", format: "table", query: "a ^ b", want: `--query "a ^ b": SyntaxError`},
		{name: "lexer panic", format: "tsv", query: "A\u00800", want: `--query "A\u00800": invalid JMESPath`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := outputFlag{format: tt.format, query: tt.query}
			err := o.validate()
			if got := ExitCode(err); got != 2 {
				t.Errorf("ExitCode(%v) = %d, want 2 (usage)", err, got)
			}
			if !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestOutputQueryRuntimeErrors(t *testing.T) {
	tests := []struct {
		name  string
		query string
	}{
		{name: "wrong argument type", query: "abs(name)"},
		{name: "interpreter panic", query: "[00()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderOutput("tsv", tt.query, outputSamples)
			if got := ExitCode(err); got != 2 || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("--query %q", tt.query)) {
				t.Errorf("print = %v (exit code %d), want a usage error naming the query", err, got)
			}
		})
	}
}

func TestOutputTableUnavailable(t *testing.T) {
	_, err := renderOutput("table", "[].{i: inner, t: tags}", outputSamples)
	if err == nil || ExitCode(err) != 1 {
		t.Errorf("print = %v, want an error: no scalar fields to show", err)
	}
}

func TestHashKeyOrders(t *testing.T) {
	tests := []struct {
		name string
		expr string
		want [][]string
	}{
		{name: "none", expr: "[].name", want: nil},
		{name: "flat", expr: "{b: x, a: y, c: z}", want: [][]string{{"b", "a", "c"}}},
		{name: "quoted keys", expr: `{"b c": x, "a\"q": y}`, want: [][]string{{"b c", `a"q`}}},
		{name: "nested inner first", expr: "{o: {y: a, x: b}, n: c}", want: [][]string{{"y", "x"}, {"o", "n"}}},
		{name: "commas in brackets and calls", expr: "{l: [a, b], f: join(',', c), m: d}", want: [][]string{{"l", "f", "m"}}},
		{name: "braces in literals", expr: "{a: `{\"k\": 1}`, b: '{c: d}', e: f}", want: [][]string{{"a", "b", "e"}}},
		{name: "filter values", expr: "[?x == 'a,b'].{n: name, t: tags[?@ == `1`]}", want: [][]string{{"n", "t"}}},
		{name: "no spaces", expr: "{a:x,b:y}", want: [][]string{{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, hashKeyOrders(tt.expr)); diff != "" {
				t.Errorf("hashKeyOrders(%q) (-want +got):\n%s", tt.expr, diff)
			}
		})
	}
}

// FuzzOutputQuery runs any query the parser accepts, in every format, on
// sample data: nothing may panic.
func FuzzOutputQuery(f *testing.F) {
	for _, q := range []string{"id", "[].name", "[].{n: name, \"q\": id}", "[?count > `1`]", "merge(@[0], {a: `[1]`})", "{a: '{', b: `\"}\"`}", "A\u00800", "[00()"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		if (&outputFlag{format: "tsv", query: query}).validate() != nil {
			return
		}
		for _, format := range []string{"tsv", "table", "json", "yaml"} {
			renderOutput(format, query, outputSamples)
		}
	})
}
