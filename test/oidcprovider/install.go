package oidcprovider

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
	// stampFile, inside node_modules, holds the hash of the package files
	// that node_modules was installed from. npm ci deletes node_modules
	// first, so a failed install leaves no stamp.
	stampFile = ".tether-install-sha256"
	// lockFile serializes installs between test binaries (flock).
	lockFile       = ".npm-ci.lock"
	installTimeout = 5 * time.Minute
)

// ensureNodeModules runs `npm ci` in dir unless node_modules was installed
// from the current package.json and package-lock.json.
func ensureNodeModules(ctx context.Context, dir string, log io.Writer) error {
	want, err := packageHash(dir)
	if err != nil {
		return err
	}
	stamp := filepath.Join(dir, "node_modules", stampFile)
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return nil
	}

	lock, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close() // releases the lock
	if err := flock(ctx, lock); err != nil {
		return err
	}
	// Another test binary may have installed while this one waited.
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return nil
	}

	if _, err := exec.LookPath("npm"); err != nil {
		return fmt.Errorf("the OIDC provider needs Node.js >= 20 and npm on PATH: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, installTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=warn")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("npm ci in %s (it needs the npm registry): %w\n%s", dir, err, out.Bytes())
	}
	if log != nil {
		fmt.Fprintf(log, "oidcprovider: npm ci took %s\n", time.Since(start).Round(time.Millisecond))
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// packageHash hashes the files npm ci installs from.
func packageHash(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("oidc provider sources: %w", err)
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
