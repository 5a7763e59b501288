package rig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// KubernetesVersion is the version of kube-apiserver, kube-controller-manager
// and kube-scheduler the rig builds; it must match hack/rig/kube/go.mod.
const KubernetesVersion = "v1.37.2"

// Binaries are the paths of the rig's programs, built from the modules under
// hack/rig and cached by content.
type Binaries struct {
	// Kube runs kube-apiserver, kube-controller-manager or kube-scheduler,
	// chosen by its first argument.
	Kube string
	// Etcd is the etcd server.
	Etcd string
	// Node is the kubelet-API node whose pods are local processes.
	Node string
	// NodeRBAC is the manifest that grants the node what it needs.
	NodeRBAC string
}

// program is one binary built from a module under hack/rig.
type program struct {
	name    string // binary name in the cache
	dir     string // module directory relative to the repository root
	ldflags string
}

func programs() []program {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	var kubeFlags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		kubeFlags = append(kubeFlags,
			"-X "+pkg+".gitVersion="+KubernetesVersion,
			"-X "+pkg+".gitMajor="+major,
			"-X "+pkg+".gitMinor="+minor,
			"-X "+pkg+".gitTreeState=clean",
		)
	}
	return []program{
		{name: "rig-kube", dir: "hack/rig/kube", ldflags: "-s -w " + strings.Join(kubeFlags, " ")},
		{name: "rig-etcd", dir: "hack/rig/etcd", ldflags: "-s -w"},
		{name: "rig-node", dir: "hack/rig/node", ldflags: "-s -w"},
	}
}

// BuildOptions says where to find the sources and where to cache binaries.
type BuildOptions struct {
	// RepoRoot is the directory holding Tether's go.mod. Empty means: found by
	// walking up from the working directory.
	RepoRoot string
	// CacheDir holds built binaries, one file per program and content hash.
	// Empty means $TETHER_RIG_CACHE, else the user cache directory + "/tether/rig".
	CacheDir string
	// Log receives one line per build ("building rig-kube ..."). Nil discards.
	Log io.Writer
}

// Build returns the rig's binaries, building those whose sources changed
// since they were cached. A cold build of rig-kube takes about ten minutes on
// two cores; a warm call returns in well under a second. Concurrent callers
// (parallel test binaries) share the cache safely: each program is built under
// an exclusive file lock and renamed into place whole.
func Build(ctx context.Context, opts BuildOptions) (Binaries, error) {
	root := opts.RepoRoot
	if root == "" {
		var err error
		if root, err = FindRepoRoot(); err != nil {
			return Binaries{}, err
		}
	}
	cache, err := cacheDir(opts.CacheDir)
	if err != nil {
		return Binaries{}, err
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return Binaries{}, fmt.Errorf("create rig cache %s: %w", cache, err)
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("find the go toolchain (is go on PATH?): %w", err)
	}
	paths := map[string]string{}
	for _, p := range programs() {
		path, err := buildProgram(ctx, root, cache, strings.TrimSpace(string(goVersion)), p, logw)
		if err != nil {
			return Binaries{}, err
		}
		paths[p.name] = path
	}
	return Binaries{
		Kube:     paths["rig-kube"],
		Etcd:     paths["rig-etcd"],
		Node:     paths["rig-node"],
		NodeRBAC: filepath.Join(root, "hack/rig/node/rbac.yaml"),
	}, nil
}

func buildProgram(ctx context.Context, root, cache, goVersion string, p program, logw io.Writer) (string, error) {
	src := filepath.Join(root, p.dir)
	sum, err := hashTree(src)
	if err != nil {
		return "", fmt.Errorf("hash sources of %s: %w", p.name, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", goVersion, p.ldflags, sum)
	out := filepath.Join(cache, p.name+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}

	unlock, err := lockFile(ctx, filepath.Join(cache, p.name+".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil { // built by another process while we waited
		return out, nil
	}
	fmt.Fprintf(logw, "building %s from %s (cached afterwards in %s)\n", p.name, p.dir, cache)
	start := time.Now()
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, "-ldflags", p.ldflags, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("build %s in %s: %w\n%s", p.name, src, err, stderr.Bytes())
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", fmt.Errorf("install %s: %w", p.name, err)
	}
	fmt.Fprintf(logw, "built %s in %s\n", p.name, time.Since(start).Round(time.Second))
	return out, nil
}

// hashTree hashes the names and contents of every regular file below dir.
func hashTree(dir string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	slices.Sort(files)
	h := sha256.New()
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lockFile takes an exclusive flock on path, polling so that ctx can cancel
// the wait, and returns the function that releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

func cacheDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	if dir := os.Getenv("TETHER_RIG_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for rig binaries (set TETHER_RIG_CACHE): %w", err)
	}
	return filepath.Join(base, "tether", "rig"), nil
}

// FindRepoRoot walks up from the working directory to the directory whose
// go.mod declares the tether.dev/tether module.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module tether.dev/tether\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find the tether repository: no go.mod of module tether.dev/tether above the working directory")
		}
		dir = parent
	}
}
