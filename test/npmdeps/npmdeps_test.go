package npmdeps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A package with no dependencies: npm ci installs it without the registry.
const (
	packageJSON = `{"name": "npmdeps-test", "version": "0.0.0", "private": true}` + "\n"
	packageLock = `{"name": "npmdeps-test", "version": "0.0.0", "lockfileVersion": 3, "requires": true,
  "packages": {"": {"name": "npmdeps-test", "version": "0.0.0"}}}` + "\n"
)

func writePackage(t *testing.T, dir, name string) {
	t.Helper()
	for file, text := range map[string]string{
		"package.json":      strings.Replace(packageJSON, "npmdeps-test", name, 1),
		"package-lock.json": strings.ReplaceAll(packageLock, "npmdeps-test", name),
	} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lineCounter counts the lines written to it, from several goroutines.
type lineCounter struct {
	mu    sync.Mutex
	lines []string // guarded by mu
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, string(p))
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// TestEnsure: the first call installs and stamps; calls at once install
// once; an unchanged package is not installed again, even without npm;
// a changed one is.
func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	writePackage(t, dir, "npmdeps-test")
	ctx := context.Background()
	installs := &lineCounter{}

	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = Ensure(ctx, dir, "npmdeps-test", installs) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := installs.count(); n != 1 {
		t.Errorf("three Ensure calls at once ran npm ci %d times, want once", n)
	}
	want, err := PackageHash(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "node_modules", StampFile)); err != nil || string(got) != want {
		t.Errorf("stamp %q (%v), want %q", got, err, want)
	}

	// Installed already: npm is not needed.
	t.Setenv("PATH", t.TempDir())
	if err := Ensure(ctx, dir, "npmdeps-test", installs); err != nil {
		t.Errorf("Ensure of an installed package without npm on PATH: %v", err)
	}
	// Changed: it must install, and says what it needs.
	writePackage(t, dir, "npmdeps-test-changed")
	if err := Ensure(ctx, dir, "npmdeps-test", installs); err == nil || !strings.Contains(err.Error(), "npm on PATH") {
		t.Errorf("Ensure of a changed package without npm: %v; want an error saying npm is needed", err)
	}
}

// TestEnsureMissingPackage names the harness and the missing file.
func TestEnsureMissingPackage(t *testing.T) {
	err := Ensure(context.Background(), t.TempDir(), "some-harness", nil)
	if err == nil || !strings.Contains(err.Error(), "some-harness") || !strings.Contains(err.Error(), "package.json") {
		t.Errorf("Ensure without package.json: %v; want an error naming the harness and package.json", err)
	}
}
