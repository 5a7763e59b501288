package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/pe"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// krewPlugin is krew's Plugin manifest, the fields Tether's uses
// (krew.sigs.k8s.io/docs/developer-guide/plugin-manifest).
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestRelease builds a release for this machine's platform and for
// windows/arm64 (the zip path, and a cross build), then checks everything a
// user or krew relies on: the archives unpack, the binaries are static and
// print the stamped version, checksums.txt matches, and the krew manifest
// names each archive with its checksum.
func TestRelease(t *testing.T) {
	t.Chdir(filepath.Join("..", ".."))
	host := runtime.GOOS + "/" + runtime.GOARCH
	out := t.TempDir()
	const version = "v1.2.3-rc.1"
	var log bytes.Buffer
	if err := run([]string{"-version", version, "-out", out, "-platforms", host + ",windows/arm64",
		"-base-url", "https://downloads.example.com/tether/" + version + "/"}, &log); err != nil {
		t.Fatalf("release: %v\n%s", err, log.Bytes())
	}

	// checksums.txt is what sha256sum -c reads, and matches the files.
	sums, err := os.ReadFile(filepath.Join(out, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("checksums.txt line %q is not \"SHA256  NAME\"", line)
		}
		want[name] = sum
	}
	hostArchive := "tether_" + version + "_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz"
	winArchive := "tether_" + version + "_windows_arm64.zip"
	if len(want) != 2 || want[hostArchive] == "" || want[winArchive] == "" {
		t.Fatalf("checksums.txt = %q, want exactly %s and %s", sums, hostArchive, winArchive)
	}
	for name, sum := range want {
		data, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: checksum %x, checksums.txt says %s", name, got, sum)
		}
	}
	// Reproducible: a second build of the same commit gives the same bytes
	// (Go's build cache makes it cheap).
	again := t.TempDir()
	if err := run([]string{"-version", version, "-out", again, "-platforms", host + ",windows/arm64",
		"-base-url", "https://downloads.example.com/tether/" + version + "/"}, &log); err != nil {
		t.Fatalf("release again: %v\n%s", err, log.Bytes())
	}
	if sums2, err := os.ReadFile(filepath.Join(again, "checksums.txt")); err != nil || !bytes.Equal(sums, sums2) {
		t.Errorf("a second release of the same commit differs (%v):\n%s\nthen\n%s", err, sums, sums2)
	}
	sha := exec.Command("sha256sum", "-c", "checksums.txt")
	sha.Dir = out
	if b, err := sha.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c checksums.txt: %v\n%s", err, b)
	}

	// The host's archive: a static binary that prints the stamped version,
	// and the README.
	files := untarGz(t, filepath.Join(out, hostArchive))
	if _, ok := files["README.md"]; !ok {
		t.Errorf("%s holds %v, want README.md beside the binary", hostArchive, keys(files))
	}
	bin := filepath.Join(t.TempDir(), "tether")
	if err := os.WriteFile(bin, files["tether"], 0o755); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: tether is not an ELF binary: %v", hostArchive, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: tether asks for a dynamic loader; want a static binary (CGO_ENABLED=0)", hostArchive)
			}
		}
		f.Close()
	}
	got, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(got), version) {
		t.Errorf("tether version = %q, %v; want it to print %s", got, err, version)
	}

	// The Windows archive: tether.exe for arm64.
	zfiles := unzip(t, filepath.Join(out, winArchive))
	exe, ok := zfiles["tether.exe"]
	if !ok {
		t.Fatalf("%s holds %v, want tether.exe", winArchive, keys(zfiles))
	}
	pf, err := pe.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatalf("tether.exe is not a PE binary: %v", err)
	}
	if pf.Machine != pe.IMAGE_FILE_MACHINE_ARM64 {
		t.Errorf("tether.exe is for machine %#x, want arm64 (%#x)", pf.Machine, pe.IMAGE_FILE_MACHINE_ARM64)
	}

	// The krew manifest names each archive with its checksum.
	raw, err := os.ReadFile(filepath.Join(out, "tether.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m krewPlugin
	// Strict: a misspelt field in the template is an error, not ignored.
	if err := yaml.UnmarshalStrict(raw, &m); err != nil {
		t.Fatalf("tether.yaml: %v\n%s", err, raw)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "tether" {
		t.Errorf("tether.yaml is %s %s %q, want a krew v1alpha2 Plugin named tether", m.APIVersion, m.Kind, m.Metadata.Name)
	}
	if m.Spec.Version != version || m.Spec.ShortDescription == "" {
		t.Errorf("tether.yaml spec.version %q (want %s), shortDescription %q", m.Spec.Version, version, m.Spec.ShortDescription)
	}
	if len(m.Spec.Platforms) != 2 {
		t.Fatalf("tether.yaml has %d platforms, want 2:\n%s", len(m.Spec.Platforms), raw)
	}
	for _, p := range m.Spec.Platforms {
		l := p.Selector.MatchLabels
		name := "tether_" + version + "_" + l["os"] + "_" + l["arch"]
		wantBin := "tether"
		if l["os"] == "windows" {
			name, wantBin = name+".zip", "tether.exe"
		} else {
			name += ".tar.gz"
		}
		if p.URI != "https://downloads.example.com/tether/"+version+"/"+name {
			t.Errorf("%s/%s: uri %s, want the base URL and %s", l["os"], l["arch"], p.URI, name)
		}
		if p.SHA256 == "" || p.SHA256 != want[name] {
			t.Errorf("%s: sha256 %q, checksums.txt says %q", name, p.SHA256, want[name])
		}
		if p.Bin != wantBin || len(p.Files) == 0 || p.Files[0].From != wantBin {
			t.Errorf("%s: bin %q, files %+v; want %s installed", name, p.Bin, p.Files, wantBin)
		}
	}
}

// TestReleaseRefuses checks the mistakes release stops at before building.
func TestReleaseRefuses(t *testing.T) {
	t.Chdir(filepath.Join("..", ".."))
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "old.tar.gz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"not semver", []string{"-version", "1.2", "-out", t.TempDir()}, "semantic version"},
		{"no leading v", []string{"-version", "1.2.3", "-out", t.TempDir()}, "leading v"},
		{"bad platform", []string{"-version", "v1.2.3", "-platforms", "linux", "-out", t.TempDir()}, "not OS/ARCH"},
		{"platform twice", []string{"-version", "v1.2.3", "-platforms", "linux/amd64,linux/amd64", "-out", t.TempDir()}, "twice"},
		{"stale artifacts", []string{"-version", "v1.2.3", "-out", full}, "not empty"},
		{"stray argument", []string{"-version", "v1.2.3", "linux/amd64"}, "unexpected arguments"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("release %q = %v, want an error about %q", tt.args, err, tt.want)
			}
		})
	}
	if entries, _ := os.ReadDir(full); len(entries) != 1 {
		t.Errorf("a refused release changed -out: %d entries, want the 1 it had", len(entries))
	}
}

func untarGz(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want 0:0 (reproducible archives)", path, h.Name, h.Uid, h.Gid)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
}

func unzip(t *testing.T, path string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = b
	}
	return files
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
