package credentials

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"tether.dev/tether/internal/atomicfile"
)

const (
	cacheDirMode  fs.FileMode = 0o700
	cacheFileMode fs.FileMode = 0o600
	entrySuffix               = ".json"
	lockSuffix                = ".lock"
	// maxEntrySize bounds what is read of a cache file.
	maxEntrySize = 1 << 20
	entryVersion = 1
)

// Key names one cache entry: who signed in where, for what.
type Key struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"client_id"`
	// Audience is the resource the access token is for.
	Audience string   `json:"audience,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// Login tells apart several sign-ins with the same client; "default"
	// when empty.
	Login string `json:"login"`
}

// normal returns k with the login defaulted and the scopes sorted, so that
// equal keys hash equally.
func (k Key) normal() Key {
	if k.Login == "" {
		k.Login = "default"
	}
	k.Issuer = strings.TrimSuffix(k.Issuer, "/")
	k.Scopes = slices.Clone(k.Scopes)
	slices.Sort(k.Scopes)
	k.Scopes = slices.Compact(k.Scopes)
	if len(k.Scopes) == 0 {
		k.Scopes = nil
	}
	return k
}

// name is the file name stem of the entry: a hash of the key, so that
// issuer URLs need no escaping.
func (k Key) name() string {
	b, _ := json.Marshal(k.normal()) // a struct of strings always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Grant types recorded in an Entry.
const (
	GrantUser              = "user" // device code or authorization code: refreshable
	GrantClientCredentials = "client_credentials"
)

// Entry is one cache file's content.
type Entry struct {
	Version int   `json:"version"`
	Key     Key   `json:"key"`
	Token   Token `json:"token"`
	// Grant is how the token was obtained (GrantUser or
	// GrantClientCredentials).
	Grant string `json:"grant"`
}

// Cache is a directory of token files, one per Key, readable only by their
// owner. Its methods are safe for concurrent use by goroutines and
// processes.
type Cache struct {
	dir string
}

// OpenCache creates dir (mode 0700) if it does not exist and checks that it
// belongs to the current user and is closed to everyone else.
func OpenCache(dir string) (*Cache, error) {
	if dir == "" {
		return nil, errors.New("token cache: no directory")
	}
	if err := os.MkdirAll(dir, cacheDirMode); err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	if err := checkPrivate(dir, true); err != nil {
		return nil, err
	}
	return &Cache{dir: dir}, nil
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) path(k Key) string { return filepath.Join(c.dir, k.name()+entrySuffix) }

// Load returns the entry for k; ok is false if there is none.
func (c *Cache) Load(k Key) (e Entry, ok bool, err error) {
	p := c.path(k)
	e, err = readEntry(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Entry{}, false, nil
	}
	if err != nil {
		return Entry{}, false, err
	}
	return e, true, nil
}

func readEntry(p string) (Entry, error) {
	f, err := os.Open(p)
	if err != nil {
		return Entry{}, err
	}
	defer f.Close()
	if err := checkPrivateFile(f, p); err != nil {
		return Entry{}, err
	}
	var e Entry
	dec := json.NewDecoder(io.LimitReader(f, maxEntrySize))
	if err := dec.Decode(&e); err != nil {
		return Entry{}, fmt.Errorf("token cache %s: %w; remove the file and sign in again", p, err)
	}
	if e.Version != entryVersion {
		return Entry{}, fmt.Errorf("token cache %s: unknown version %d; remove the file and sign in again", p, e.Version)
	}
	return e, nil
}

// Store writes the entry for k atomically with mode 0600.
func (c *Cache) Store(k Key, tok Token, grant string) error {
	e := Entry{Version: entryVersion, Key: k.normal(), Token: tok, Grant: grant}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	if err := atomicfile.Write(c.path(k), b, cacheFileMode); err != nil {
		return fmt.Errorf("token cache: %w", err)
	}
	return nil
}

// Lock takes the exclusive lock of k's entry, waiting for another process
// or goroutine that holds it until ctx ends. Unlock releases it. The lock
// is a separate file, because Store replaces the entry's file.
func (c *Cache) Lock(ctx context.Context, k Key) (unlock func(), err error) {
	p := filepath.Join(c.dir, k.name()+lockSuffix)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, cacheFileMode)
	if err != nil {
		return nil, fmt.Errorf("token cache: lock: %w", err)
	}
	if err := checkPrivateFile(f, p); err != nil {
		f.Close()
		return nil, err
	}
	if err := lockFile(ctx, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("token cache: lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the flock
}

// List returns the entries, sorted by issuer, client and login. Files that
// cannot be read are reported in err, after the others are listed.
func (c *Cache) List() ([]Entry, error) {
	des, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	var entries []Entry
	var errs []error
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), entrySuffix) || strings.HasPrefix(de.Name(), ".") {
			continue
		}
		e, err := readEntry(filepath.Join(c.dir, de.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b Entry) int {
		return strings.Compare(a.Key.Issuer+"\x00"+a.Key.ClientID+"\x00"+a.Key.Login, b.Key.Issuer+"\x00"+b.Key.ClientID+"\x00"+b.Key.Login)
	})
	return entries, errors.Join(errs...)
}

// Logout removes the entries of issuer, or all entries when issuer is
// empty, and returns their keys. It takes each entry's lock first, so it
// does not race a refresh.
func (c *Cache) Logout(ctx context.Context, issuer string) ([]Key, error) {
	entries, err := c.List()
	if err != nil && len(entries) == 0 {
		return nil, err
	}
	issuer = strings.TrimSuffix(issuer, "/")
	var removed []Key
	for _, e := range entries {
		if issuer != "" && e.Key.Issuer != issuer {
			continue
		}
		unlock, err := c.Lock(ctx, e.Key)
		if err != nil {
			return removed, err
		}
		err = os.Remove(c.path(e.Key))
		// The lock file stays: removing it while another process waits
		// on it would let a third lock a new file at the same path.
		unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, fmt.Errorf("token cache: %w", err)
		}
		removed = append(removed, e.Key)
	}
	return removed, nil
}
