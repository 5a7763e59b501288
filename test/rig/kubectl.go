package rig

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// FindKubectl returns the path of a real kubectl binary of the given minor
// version ("1.27" ... "1.33"), as shipped by the Google Cloud SDK next to
// the kubectl on PATH, or the kubectl on PATH itself for version "".
// kubectl 1.30 and later speak WebSocket for exec, attach and cp (1.31 and
// later also for port-forward); older ones speak SPDY only.
func FindKubectl(version string) (string, error) {
	path, err := exec.LookPath("kubectl")
	if err != nil {
		return "", fmt.Errorf("kubectl is not on PATH: install it (Debian package kubectl from the Google Cloud SDK): %w", err)
	}
	if version == "" {
		return path, nil
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	versioned := filepath.Join(filepath.Dir(resolved), "kubectl."+version)
	if _, err := os.Stat(versioned); err != nil {
		return "", fmt.Errorf("kubectl %s is not installed next to %s: %w", version, resolved, err)
	}
	return versioned, nil
}
