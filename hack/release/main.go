// Command release builds Tether's release artifacts (make release): static
// tether binaries for every platform, stamped with the version, packed in
// reproducible archives, a sha256sum-style checksums file, and the krew
// plugin manifest that installs the binary as the kubectl plugin
// kubectl-tether.
//
//	go run ./hack/release [-version vX.Y.Z] [-out dist] [-platforms linux/amd64,...]
//	                      [-base-url https://.../download/vX.Y.Z]
//	go run ./hack/release -bin-only -platforms linux/arm64 -out /out   (the Dockerfile)
//
// Archives hold the binary (tether, or tether.exe on Windows), README.md
// and docs/cli.md when present, with fixed owners and the commit's time as
// every file's time, so that two builds of one commit are byte for byte the
// same (Go's builds are, with -trimpath).
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"k8s.io/apimachinery/pkg/util/version"
)

// versionVar is the variable -ldflags -X stamps (tether version prints it).
const versionVar = "tether.dev/tether/internal/cli.Version"

// defaultPlatforms are the release's platforms: Linux for hubs and agents,
// macOS and Windows for the people who run kubectl.
var defaultPlatforms = []string{
	"linux/amd64", "linux/arm64",
	"darwin/amd64", "darwin/arm64",
	"windows/amd64", "windows/arm64",
}

// docFiles go into every archive beside the binary, when they exist.
var docFiles = []string{"README.md", "docs/cli.md"}

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

type options struct {
	version   string
	out       string
	platforms []platform
	baseURL   string
	binOnly   bool
	// epoch is every archived file's modification time.
	epoch time.Time
}

type platform struct{ os, arch string }

func (p platform) String() string { return p.os + "/" + p.arch }

// exe is the binary's file name on p.
func (p platform) exe() string {
	if p.os == "windows" {
		return "tether.exe"
	}
	return "tether"
}

func run(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(log)
	var o options
	var platforms string
	fs.StringVar(&o.version, "version", "", "the release's version, vMAJOR.MINOR.PATCH[-PRE] (default: the tag at HEAD, else v0.0.0-dev.COMMIT)")
	fs.StringVar(&o.out, "out", "dist", "directory for the artifacts; created, and must be empty")
	fs.StringVar(&platforms, "platforms", strings.Join(defaultPlatforms, ","), "comma-separated OS/ARCH pairs")
	fs.StringVar(&o.baseURL, "base-url", "", "where the archives will be downloaded from, for the krew manifest (default https://github.com/tether-dev/tether/releases/download/VERSION)")
	fs.BoolVar(&o.binOnly, "bin-only", false, "write only the binaries, OUT/OS_ARCH/tether (for container builds)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (-h lists them)", fs.Args())
	}
	var err error
	if o.platforms, err = parsePlatforms(platforms); err != nil {
		return err
	}
	if o.version == "" {
		o.version = gitVersion()
	}
	if _, err := version.ParseSemantic(o.version); err != nil || !strings.HasPrefix(o.version, "v") {
		return fmt.Errorf("-version %q: want a semantic version with a leading v, like v1.2.3 or v1.3.0-rc.1 (krew and Helm need one)", o.version)
	}
	if o.baseURL == "" {
		o.baseURL = "https://github.com/tether-dev/tether/releases/download/" + o.version
	}
	o.baseURL = strings.TrimSuffix(o.baseURL, "/")
	o.epoch = commitTime()
	if err := emptyDir(o.out); err != nil {
		return err
	}
	return release(o, log)
}

func parsePlatforms(s string) ([]platform, error) {
	var ps []platform
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		goos, arch, ok := strings.Cut(f, "/")
		if !ok || goos == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("-platforms: %q is not OS/ARCH (like linux/amd64)", f)
		}
		p := platform{goos, arch}
		if slices.Contains(ps, p) {
			return nil, fmt.Errorf("-platforms: %s is listed twice", p)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// gitVersion is the tag at HEAD if there is one, else a pre-release of
// v0.0.0 naming the commit (and whether the tree had changes).
func gitVersion() string {
	if out, err := exec.Command("git", "describe", "--tags", "--exact-match").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	v := "v0.0.0-dev." + commit
	if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(out)) > 0 {
		v += ".dirty"
	}
	return v
}

// commitTime is $SOURCE_DATE_EPOCH, else HEAD's commit time, else the Unix
// epoch: never the build's clock, which would change the archives.
func commitTime() time.Time {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		if out, err := exec.Command("git", "log", "-1", "--format=%ct").Output(); err == nil {
			s = strings.TrimSpace(string(out))
		}
	}
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil && sec > 0 {
		return time.Unix(sec, 0).UTC()
	}
	return time.Unix(0, 0).UTC()
}

// emptyDir creates dir, or accepts it when empty: stale artifacts of an
// earlier run must never be published beside new ones.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("-out %s is not empty: remove it first (rm -r %s) or pick another directory", dir, dir)
	}
	return nil
}

// artifact is one archive and its checksum.
type artifact struct {
	platform platform
	name     string
	sha256   string
}

func release(o options, log io.Writer) error {
	work, err := os.MkdirTemp("", "tether-release-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var arts []artifact
	for _, p := range o.platforms {
		start := time.Now()
		dir := filepath.Join(work, p.os+"_"+p.arch)
		if o.binOnly {
			dir = filepath.Join(o.out, p.os+"_"+p.arch)
		}
		bin := filepath.Join(dir, p.exe())
		if err := build(p, o.version, bin); err != nil {
			return err
		}
		if o.binOnly {
			fmt.Fprintf(log, "release: %s %s (%s)\n", p, bin, time.Since(start).Round(time.Millisecond))
			continue
		}
		a, err := pack(o, p, bin)
		if err != nil {
			return err
		}
		arts = append(arts, a)
		fmt.Fprintf(log, "release: %s %s (%s)\n", p, a.name, time.Since(start).Round(time.Millisecond))
	}
	if o.binOnly {
		return nil
	}
	var sums strings.Builder
	for _, a := range arts {
		fmt.Fprintf(&sums, "%s  %s\n", a.sha256, a.name)
	}
	if err := os.WriteFile(filepath.Join(o.out, "checksums.txt"), []byte(sums.String()), 0o644); err != nil {
		return err
	}
	manifest, err := krewManifest(o, arts)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.out, "tether.yaml"), manifest, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(log, "release: %s: %d archives, checksums.txt, tether.yaml (krew manifest) in %s\n", o.version, len(arts), o.out)
	return nil
}

// build compiles a static binary for p: no cgo (the SQLite driver is pure
// Go), no paths of this machine, symbols stripped.
func build(p platform, v, out string) error {
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X "+versionVar+"="+v,
		"-o", out, "./cmd/tether")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.os, "GOARCH="+p.arch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build for %s: %v\n%s", p, err, stderr.Bytes())
	}
	return nil
}

// pack writes p's archive (zip on Windows, where krew and people expect
// one, tar.gz elsewhere) and returns its checksum.
func pack(o options, p platform, bin string) (artifact, error) {
	files := []archived{{name: p.exe(), path: bin, mode: 0o755}}
	for _, d := range docFiles {
		if _, err := os.Stat(d); err == nil {
			files = append(files, archived{name: filepath.Base(d), path: d, mode: 0o644})
		}
	}
	var buf bytes.Buffer
	name := fmt.Sprintf("tether_%s_%s_%s", o.version, p.os, p.arch)
	var err error
	if p.os == "windows" {
		name += ".zip"
		err = writeZip(&buf, files, o.epoch)
	} else {
		name += ".tar.gz"
		err = writeTarGz(&buf, files, o.epoch)
	}
	if err != nil {
		return artifact{}, fmt.Errorf("pack %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(o.out, name), buf.Bytes(), 0o644); err != nil {
		return artifact{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	return artifact{platform: p, name: name, sha256: hex.EncodeToString(sum[:])}, nil
}

// archived is one file of an archive: its name there, where it is read
// from, and its mode.
type archived struct {
	name, path string
	mode       int64
}

func writeTarGz(w io.Writer, files []archived, mtime time.Time) error {
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(data)), ModTime: mtime,
			Typeflag: tar.TypeReg, Uname: "root", Gname: "root", Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, files []archived, mtime time.Time) error {
	zw := zip.NewWriter(w)
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: mtime}
		hdr.SetMode(os.FileMode(f.mode))
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := fw.Write(data); err != nil {
			return err
		}
	}
	return zw.Close()
}

// krewManifest renders the krew plugin manifest (krew index format
// v1alpha2) for the archives made; krew installs the binary as
// kubectl-tether, so that `kubectl tether ...` runs it.
func krewManifest(o options, arts []artifact) ([]byte, error) {
	tmpl, err := template.ParseFiles(filepath.Join("deploy", "krew", "tether.yaml.tmpl"))
	if err != nil {
		return nil, fmt.Errorf("krew manifest template: %w", err)
	}
	type plat struct{ OS, Arch, URI, SHA256, Bin string }
	data := struct {
		Version   string
		Platforms []plat
	}{Version: o.version}
	for _, a := range arts {
		data.Platforms = append(data.Platforms, plat{OS: a.platform.os, Arch: a.platform.arch,
			URI: o.baseURL + "/" + a.name, SHA256: a.sha256, Bin: a.platform.exe()})
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("krew manifest: %w", err)
	}
	return buf.Bytes(), nil
}
