package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/jmespath/go-jmespath"
	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// outputFlag is az CLI's output options: -o table|json|yaml|tsv and
// --query JMESPATH.
//
// The query runs on the JSON form of the value (what -o json prints without
// it), and its result is printed in the chosen format; a null result prints
// nothing, as in az. Without --query, json and yaml print the value and table
// calls the command's own table function. A query that does not parse is a
// usage error from validate, before any request; one that fails on the data
// (a function given the wrong type) is a usage error from print.
//
// tsv prints values without keys, one line per element of a list (a value
// that is not a list is one line), so that
//
//	tether cluster show -g G -n N --query id -o tsv
//
// prints the ID and a newline. On a line:
//   - a scalar prints as itself: a string without quotes, a number as in
//     JSON (1000000, never 1e+06), true or false, null as an empty string;
//   - an object prints its values separated by tabs; a nested object is
//     an empty field and a nested list the number of its elements, as
//     az does (knack's _TsvOutput), so that rows keep their columns;
//   - a list nested in the top-level list prints like an object's values.
//
// Strings go out as they are, tabs and newlines included, as in az: a value
// that may hold them is best read with -o json.
//
// Key order (tsv, table, and json after --query) is decided by the set of
// keys an object has: the order written in the query's multiselect hashes
// ({name: name, id: id} prints name then id); else the order of the first
// object with exactly those keys in the value's JSON encoding, which for a
// struct is its field order; else (objects made by JMESPath functions such
// as merge) sorted.
type outputFlag struct {
	format string
	query  string
	expr   *jmespath.JMESPath // the compiled query, set by validate
}

func (o *outputFlag) register(fs *pflag.FlagSet) {
	fs.StringVarP(&o.format, "output", "o", "table", "output format: table, json, yaml or tsv")
	fs.StringVar(&o.query, "query", "", `JMESPath query applied to the JSON result, e.g. id or "[].name" (see jmespath.org)`)
}

// validate checks -o and compiles --query, so that a bad expression is
// reported before any request is made.
func (o *outputFlag) validate() error {
	switch o.format {
	case "table", "json", "yaml", "tsv":
	default:
		return usageError{fmt.Errorf("--output %q: want table, json, yaml or tsv", o.format)}
	}
	if o.query == "" || o.expr != nil {
		return nil
	}
	expr, err := noPanic(func() (*jmespath.JMESPath, error) { return jmespath.Compile(o.query) })
	if err != nil {
		return usageError{fmt.Errorf("--query %q: %w", o.query, err)}
	}
	o.expr = expr
	return nil
}

// print writes v in the chosen format, after --query if there is one; table
// prints v as a table when there is no query, or when the query gives back
// v as it was.
func (o *outputFlag) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.query == "" && o.format != "tsv" {
		return o.printValue(w, v, table)
	}
	orders := keyOrders{}
	for _, keys := range hashKeyOrders(o.query) {
		orders.add(keys)
	}
	data, err := decodeJSON(v, orders)
	if err != nil {
		return err
	}
	result := data
	if o.expr != nil {
		data = floats(data)
		result, err = noPanic(func() (any, error) { return o.expr.Search(data) })
		if err != nil {
			return usageError{fmt.Errorf("--query %q: %w", o.query, err)}
		}
		if o.format == "table" && reflect.DeepEqual(result, data) {
			return o.printValue(w, v, table)
		}
	}
	if result == nil {
		return nil
	}
	out := orders.apply(result)
	switch o.format {
	case "tsv":
		return writeTSV(w, out)
	case "table":
		return writeTable(w, out)
	}
	return o.printValue(w, out, nil)
}

// noPanic calls f, turning a panic into an error. go-jmespath v0.4.0 panics
// on some malformed queries, in its lexer ("A\u00800") and its interpreter
// ("[00()"): a mistake in the query, to report rather than crash on.
func noPanic[T any](f func() (T, error)) (v T, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("invalid JMESPath: %v", p)
		}
	}()
	return f()
}

// printValue writes v as JSON or YAML, or calls table for the table format.
func (o *outputFlag) printValue(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	switch o.format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
}

// keyOrders maps a set of object keys (see keySet) to the order to print
// them in; the first order recorded for a set wins.
type keyOrders map[string][]string

func keySet(keys []string) string {
	b, _ := json.Marshal(slices.Sorted(slices.Values(keys))) // a []string always marshals
	return string(b)
}

func (k keyOrders) add(keys []string) {
	set := keySet(keys)
	if _, ok := k[set]; !ok {
		k[set] = keys
	}
}

// apply turns every map in v into an object with its keys in order.
func (k keyOrders) apply(v any) any {
	switch v := v.(type) {
	case map[string]any:
		keys := k[keySet(slices.Collect(maps.Keys(v)))]
		if keys == nil {
			keys = slices.Sorted(maps.Keys(v))
		}
		ob := make(object, len(keys))
		for i, key := range keys {
			ob[i] = member{key, k.apply(v[key])}
		}
		return ob
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = k.apply(e)
		}
		return out
	}
	return v
}

// object is a JSON object whose members print in a chosen order.
type object []member

type member struct {
	key   string
	value any
}

func (ob object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ob {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// decodeJSON returns the JSON form of v (maps, slices, strings, json.Number,
// bools and nils), recording in orders the key order of each of its objects.
func decodeJSON(v any, orders keyOrders) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return decodeValue(dec, orders)
}

func decodeValue(dec *json.Decoder, orders keyOrders) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		var keys []string
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key := k.(string) // the decoder only gives strings for keys
			if m[key], err = decodeValue(dec, orders); err != nil {
				return nil, err
			}
			keys = append(keys, key)
		}
		orders.add(keys)
		_, err = dec.Token() // '}'
		return m, err
	case json.Delim('['):
		l := []any{}
		for dec.More() {
			e, err := decodeValue(dec, orders)
			if err != nil {
				return nil, err
			}
			l = append(l, e)
		}
		_, err = dec.Token() // ']'
		return l, err
	}
	return tok, nil
}

// floats replaces the json.Numbers in v by float64s, the only numbers
// JMESPath compares and computes with. Integers beyond 2^53 lose precision
// there; without --query they print exactly.
func floats(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return v
		}
		return f
	case map[string]any:
		for k, e := range v {
			v[k] = floats(e)
		}
	case []any:
		for i, e := range v {
			v[i] = floats(e)
		}
	}
	return v
}

// hashKeyOrders returns the keys of each multiselect hash ({a: x, "b c": y})
// in a JMESPath expression, in the order written. The expression has already
// been parsed, so the scan only skips literals and tracks brackets: braces
// outside literals only ever open a multiselect hash.
func hashKeyOrders(expr string) [][]string {
	type open struct {
		bracket byte
		keys    []string
	}
	var (
		stack     []open
		out       [][]string
		expectKey bool // a key may start here: just after '{' or a hash's ','
	)
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		case c == '\'' || c == '`' || c == '"':
			end := closingQuote(expr, i)
			if expectKey && c == '"' {
				var key string
				if json.Unmarshal([]byte(expr[i:end+1]), &key) == nil {
					stack[len(stack)-1].keys = append(stack[len(stack)-1].keys, key)
				}
			}
			i = end
		case expectKey && isIdentByte(c, true):
			end := i + 1
			for end < len(expr) && isIdentByte(expr[end], false) {
				end++
			}
			stack[len(stack)-1].keys = append(stack[len(stack)-1].keys, expr[i:end])
			i = end - 1
		case c == '{' || c == '[' || c == '(':
			stack = append(stack, open{bracket: c})
			expectKey = c == '{'
			continue
		case c == '}' || c == ']' || c == ')':
			if len(stack) > 0 {
				if top := stack[len(stack)-1]; top.bracket == '{' {
					out = append(out, top.keys)
				}
				stack = stack[:len(stack)-1]
			}
		case c == ',':
			expectKey = len(stack) > 0 && stack[len(stack)-1].bracket == '{'
			continue
		}
		expectKey = false
	}
	return out
}

// closingQuote returns the index of the quote that closes the one at
// expr[start], skipping backslash escapes, or the last index if unclosed.
func closingQuote(expr string, start int) int {
	for i := start + 1; i < len(expr); i++ {
		switch expr[i] {
		case '\\':
			i++
		case expr[start]:
			return i
		}
	}
	return len(expr) - 1
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// writeTSV writes v as described on outputFlag.
func writeTSV(w io.Writer, v any) error {
	rows, ok := v.([]any)
	if !ok {
		rows = []any{v}
	}
	var b strings.Builder
	for _, row := range rows {
		var fields []string
		switch row := row.(type) {
		case object:
			for _, m := range row {
				fields = append(fields, tsvField(m.value))
			}
		case []any:
			for _, e := range row {
				fields = append(fields, tsvField(e))
			}
		default:
			fields = []string{scalarText(row)}
		}
		b.WriteString(strings.Join(fields, "\t"))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tsvField is a value nested in a tsv row: an object is an empty field and
// a list the number of its elements.
func tsvField(v any) string {
	switch v := v.(type) {
	case object:
		return ""
	case []any:
		return strconv.Itoa(len(v))
	}
	return scalarText(v)
}

// scalarText is a JSON scalar as tsv and table cells show it.
func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return v.String()
	case float64:
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}

// writeTable writes a query result as az's table format does: one row per
// element of a list (a single object is one row), a column for each key
// that has a scalar value in some row, in the order first met and headed by
// the key with its first letter in upper case; nulls, nested objects and
// lists are left out. A row that is a list has columns Column1, Column2...;
// one that is a scalar has the column Result. A scalar result prints alone.
// Unlike az, id is not left out: a query asks for the keys it shows.
func writeTable(w io.Writer, v any) error {
	var rows []any
	switch v := v.(type) {
	case []any:
		rows = v
	case object:
		rows = []any{v}
	default:
		_, err := fmt.Fprintln(w, scalarText(v))
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	var columns []string
	cells := make([]map[string]string, len(rows))
	for i, row := range rows {
		cells[i] = map[string]string{}
		var ms object
		switch row := row.(type) {
		case object:
			ms = row
		case []any:
			for j, e := range row {
				ms = append(ms, member{fmt.Sprintf("Column%d", j+1), e})
			}
		default:
			ms = object{{"Result", row}}
		}
		for _, m := range ms {
			switch m.value.(type) {
			case nil, object, []any:
				continue
			}
			col := capitalize(m.key)
			if !slices.Contains(columns, col) {
				columns = append(columns, col)
			}
			cells[i][col] = scalarText(m.value)
		}
	}
	if len(columns) == 0 {
		return errors.New("table output unavailable for this result: pick scalar fields with --query or use -o json")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(columns, "\t"))
	for _, c := range cells {
		line := make([]string, len(columns))
		for j, col := range columns {
			line[j] = c[col]
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// capitalize upper-cases the first letter of s, as az's table headers do.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
