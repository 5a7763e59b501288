package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// outputFlag is -o json|yaml|table.
type outputFlag struct{ format string }

func (o *outputFlag) register(fs *pflag.FlagSet) {
	fs.StringVarP(&o.format, "output", "o", "table", "output format: table, json or yaml")
}

func (o *outputFlag) validate() error {
	switch o.format {
	case "table", "json", "yaml":
		return nil
	}
	return usageError{fmt.Errorf("--output %q: want table, json or yaml", o.format)}
}

// print writes v as JSON or YAML, or calls table for the table format.
func (o *outputFlag) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
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
