// Package kubeconfig reads, merges and writes kubeconfig files the way kubectl
// does (client-go's clientcmd types and serialisation, kubectl's rules for
// which file to write and its .lock convention), but never leaves a
// half-written file: every write goes to a temporary file in the same
// directory, mode 0600, and is renamed into place.
package kubeconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"tether.dev/tether/internal/atomicfile"
)

// Paths says where kubeconfig files are, as kubectl would find them.
type Paths struct {
	// Explicit is a file named on the command line (--kubeconfig, -f);
	// it wins over everything else when set.
	Explicit string
	// Env is the value of $KUBECONFIG: a list of files separated by the OS
	// path-list separator.
	Env string
	// Home is the user's home directory; ~/.kube/config is the default file.
	Home string
}

// Target returns the file a new entry is written to, following kubectl's
// rules (clientcmd.PathOptions.GetDefaultFilename): the explicit file; else
// the only file in $KUBECONFIG, or the first of its files that exists, or its
// last one; else ~/.kube/config. If the context already exists in one of the
// $KUBECONFIG files, that file is returned so the entry is updated in place.
func (p Paths) Target(context string) string {
	if p.Explicit != "" {
		return p.Explicit
	}
	files := filepath.SplitList(p.Env)
	var nonEmpty []string
	for _, f := range files {
		if f != "" {
			nonEmpty = append(nonEmpty, f)
		}
	}
	if len(nonEmpty) == 0 {
		return filepath.Join(p.Home, ".kube", "config")
	}
	if context != "" {
		for _, f := range nonEmpty {
			if cfg, err := clientcmd.LoadFromFile(f); err == nil && cfg.Contexts[context] != nil {
				return f
			}
		}
	}
	if len(nonEmpty) == 1 {
		return nonEmpty[0]
	}
	for _, f := range nonEmpty {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return nonEmpty[len(nonEmpty)-1]
}

// Entry is one context with its cluster and user, all three under Name.
type Entry struct {
	// Name names the context, the cluster entry and the user entry.
	Name string
	// Server is the cluster's URL.
	Server string
	// CAData is the PEM bundle that verifies Server; empty means the system roots.
	CAData []byte
	// Token is a bearer token for the user entry; may be empty.
	Token string
	// Exec, when set, makes the user entry an exec credential plugin.
	Exec *clientcmdapi.ExecConfig
	// Namespace is the context's default namespace; empty means none.
	Namespace string
}

// Merge adds or replaces Entry in the kubeconfig at path (created if missing),
// leaving every other entry as it was. With setCurrent it also makes Entry the
// current context. It returns the previous current context.
func Merge(path string, e Entry, setCurrent bool) (previous string, err error) {
	if e.Name == "" || e.Server == "" {
		return "", errors.New("kubeconfig entry needs a name and a server")
	}
	err = update(path, func(cfg *clientcmdapi.Config) error {
		previous = mergeInto(cfg, e)
		if !setCurrent {
			cfg.CurrentContext = previous
		}
		return nil
	})
	return previous, err
}

// Remove deletes the context name and the cluster and user entries of the
// same name from the kubeconfig at path. If name was the current context,
// current becomes restore (which may be empty). A missing file or entry is
// not an error.
func Remove(path, name, restore string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return update(path, func(cfg *clientcmdapi.Config) error {
		delete(cfg.Contexts, name)
		delete(cfg.Clusters, name)
		delete(cfg.AuthInfos, name)
		if cfg.CurrentContext == name {
			cfg.CurrentContext = restore
			if cfg.Contexts[restore] == nil {
				cfg.CurrentContext = ""
			}
		}
		return nil
	})
}

// Serialize returns the kubeconfig holding only Entry, as current context,
// for writing to standard output.
func Serialize(e Entry) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	mergeInto(cfg, e)
	return clientcmd.Write(*cfg)
}

// mergeInto sets e's three entries in cfg, makes e current and returns the
// context that was current before.
func mergeInto(cfg *clientcmdapi.Config, e Entry) string {
	cluster := clientcmdapi.NewCluster()
	cluster.Server = e.Server
	cluster.CertificateAuthorityData = e.CAData
	user := clientcmdapi.NewAuthInfo()
	user.Token = e.Token
	user.Exec = e.Exec
	ctx := clientcmdapi.NewContext()
	ctx.Cluster, ctx.AuthInfo, ctx.Namespace = e.Name, e.Name, e.Namespace
	cfg.Clusters[e.Name] = cluster
	cfg.AuthInfos[e.Name] = user
	cfg.Contexts[e.Name] = ctx
	prev := cfg.CurrentContext
	cfg.CurrentContext = e.Name
	return prev
}

// update loads path (empty config if missing), applies change, and writes
// the result atomically, holding kubectl's PATH.lock while it does.
func update(path string, change func(*clientcmdapi.Config) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory for kubeconfig %s: %w", path, err)
	}
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()

	cfg := clientcmdapi.NewConfig()
	if _, err := os.Stat(path); err == nil {
		if cfg, err = clientcmd.LoadFromFile(path); err != nil {
			return fmt.Errorf("read kubeconfig %s (fix or move it, then retry): %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read kubeconfig %s: %w", path, err)
	}
	if err := change(cfg); err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// lock takes kubectl's lock on path (an exclusively created PATH.lock), so
// that a concurrent `kubectl config` does not interleave with us. It waits up
// to 5 s for a holder to finish.
func lock(path string) (func(), error) {
	name := path + ".lock"
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(name) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lock kubeconfig %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kubeconfig %s is locked by another program (%s exists); if none is running, remove the lock file", path, name)
		}
		time.Sleep(50 * time.Millisecond) // polling a lock file held by another process; there is nothing to wait on
	}
}
