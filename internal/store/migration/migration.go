// Package migration reads the embedded schema migrations of a store
// backend: SQL files named NNNN_words.sql, applied once each, in order.
package migration

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// A Migration is one SQL file, applied once, in a transaction.
type Migration struct {
	Version int    // from the file name's number, 1, 2, ...
	Name    string // the file name, recorded with the version
	SQL     string
}

// Load reads the migrations in fsys's top directory. Every entry must be a
// file named NNNN_words.sql, and the numbers must run 1, 2, ... without
// gaps or repeats.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	ms := make([]Migration, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		prefix, _, _ := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if e.IsDir() || len(prefix) != 4 || err != nil || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: want a file named NNNN_name.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		ms = append(ms, Migration{Version: version, Name: name, SQL: string(b)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: want number %04d", m.Name, i+1)
		}
	}
	return ms, nil
}
