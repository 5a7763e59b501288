package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if diff := cmp.Diff("new", string(got)); diff != "" {
		t.Errorf("content (-want +got):\n%s", diff)
	}
	info, _ := os.Stat(path)
	if diff := cmp.Diff(os.FileMode(0o600), info.Mode().Perm()); diff != "" {
		t.Errorf("mode (-want +got):\n%s", diff)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("leftover files: %v", entries)
	}
}

func TestWriteFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "file")
	os.WriteFile(path, []byte("keep me"), 0o600)
	if err := os.Chmod(dir, 0o500); err != nil { // no new files in dir
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		// root ignores directory permissions; use a path whose parent is a file instead.
		if err := Write(filepath.Join(path, "child"), []byte("x"), 0o600); err == nil {
			t.Fatal("write below a regular file succeeded")
		}
	} else if err := Write(path, []byte("new"), 0o600); err == nil {
		t.Fatal("write into a read-only directory succeeded")
	}
	got, _ := os.ReadFile(path)
	if diff := cmp.Diff("keep me", string(got)); diff != "" {
		t.Errorf("old file changed (-want +got):\n%s", diff)
	}
}
