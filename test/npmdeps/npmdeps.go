// Package npmdeps installs the Node packages of the test harnesses that run
// Node programs (test/oidcprovider, test/playwright) from their committed
// package.json and package-lock.json, once per change of those files, and
// safely when several test binaries start at the same time.
//
//	test binary ─► Ensure(dir) ─► dir/node_modules/.tether-install-sha256 matches? ─► done
//	                   │ no
//	                   └─ flock dir/.npm-ci.lock ─► check again ─► npm ci (the npm registry) ─► write the stamp
package npmdeps

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

const (
	// StampFile, inside node_modules, holds the hash of the package files
	// node_modules was installed from. npm ci deletes node_modules first,
	// so a failed install leaves no stamp.
	StampFile = ".tether-install-sha256"
	// LockFile, in the package directory, serializes installs between test
	// binaries (flock); the package's .gitignore lists it.
	LockFile       = ".npm-ci.lock"
	installTimeout = 5 * time.Minute
)

// Ensure runs `npm ci` in dir unless dir/node_modules was installed from
// the current package.json and package-lock.json. what names the harness in
// errors and in the line written to log (nil: none) after an install.
func Ensure(ctx context.Context, dir, what string, log io.Writer) error {
	want, err := PackageHash(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	stamp := filepath.Join(dir, "node_modules", StampFile)
	if installed(stamp, want) {
		return nil
	}

	lock, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	if err := flock(ctx, lock); err != nil {
		return err
	}
	// Another test binary may have installed while this one waited.
	if installed(stamp, want) {
		return nil
	}

	if _, err := exec.LookPath("npm"); err != nil {
		return fmt.Errorf("%s needs Node.js >= 20 and npm on PATH (hack/deps.sh checks for them): %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	start := time.Now()
	// --ignore-scripts: no package runs code at install time (playwright-core
	// would otherwise be free to download browsers; it does not need to).
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=warn")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: npm ci in %s (it needs the npm registry): %w\n%s", what, dir, err, out.Bytes())
	}
	if log != nil {
		fmt.Fprintf(log, "%s: npm ci took %s\n", what, time.Since(start).Round(time.Millisecond))
	}
	// A package without dependencies gets no node_modules from npm.
	if err := os.MkdirAll(filepath.Dir(stamp), 0o755); err != nil {
		return err
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

func installed(stamp, want string) bool {
	got, err := os.ReadFile(stamp)
	return err == nil && string(got) == want
}

// PackageHash hashes the files npm ci installs from: package.json and
// package-lock.json in dir.
func PackageHash(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("node package sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", name, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// flock takes an exclusive lock on f, polling so that ctx can end the wait.
func flock(ctx context.Context, f *os.File) error {
	deadline := time.Now().Add(installTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock %s: another npm ci held it for %s", f.Name(), installTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
