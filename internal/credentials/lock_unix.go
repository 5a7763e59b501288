//go:build unix

package credentials

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockPoll is how often lockFile retries a held lock; flock cannot wait for
// a context, so it polls.
const lockPoll = 25 * time.Millisecond

// lockFile takes an exclusive flock on f, retrying until ctx ends.
func lockFile(ctx context.Context, f *os.File) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		t.Reset(lockPoll)
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for another tether process to finish signing in: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// checkPrivate checks that path (a directory if dir) is owned by the
// current user and has no permissions for group or others.
func checkPrivate(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if dir && !fi.IsDir() {
		return fmt.Errorf("token cache: %s is not a directory", path)
	}
	return checkInfo(fi, path)
}

func checkPrivateFile(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("token cache: %s is not a regular file; remove it", path)
	}
	return checkInfo(fi, path)
}

func checkInfo(fi os.FileInfo, path string) error {
	want := cacheFileMode
	if fi.IsDir() {
		want = cacheDirMode
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("token cache: %s belongs to user %d, not to you (%d); remove it, or run chown %d %s",
			path, st.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("token cache: %s has mode %#o, open to other users; run chmod %o %s (and sign in again if others may have read it)",
			path, perm, want, path)
	}
	return nil
}
