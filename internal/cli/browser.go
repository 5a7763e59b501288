package cli

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"golang.org/x/term"

	"tether.dev/tether/internal/credentials"
)

// browserOpener returns what opens a URL in the user's browser on this
// machine, or nil when there is none: no opener program, or (on Unix) no
// graphical session to show a browser in.
func browserOpener() credentials.Browser {
	var name string
	var args []string
	switch runtime.GOOS {
	case "darwin":
		name = "open"
	case "windows":
		name, args = "rundll32", []string{"url.dll,FileProtocolHandler"}
	default:
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return nil
		}
		name = "xdg-open"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return nil
	}
	return func(url string) error {
		cmd := exec.Command(path, append(args, url)...)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("open a browser with %s: %w", name, err)
		}
		go cmd.Wait() // the opener may outlive the sign-in; reap it
		return nil
	}
}

// chooseFlow picks tether login's interactive sign-in: the browser
// (authorization code with PKCE on a loopback redirect) when a person is
// at a terminal with a browser at hand, else the device code, which works
// from anywhere. --use-device-code and --auth-code force one.
func chooseFlow(useDeviceCode, authCode bool) (credentials.Flow, credentials.Browser, error) {
	open := browserOpener()
	switch {
	case useDeviceCode && authCode:
		return 0, nil, usageError{errors.New("--use-device-code and --auth-code exclude each other")}
	case useDeviceCode:
		return credentials.FlowDeviceCode, nil, nil
	case authCode:
		// Without a browser the URL is printed: open it anywhere that can
		// reach this machine's loopback address.
		return credentials.FlowAuthCode, open, nil
	case open != nil && term.IsTerminal(int(os.Stdin.Fd())):
		return credentials.FlowAuthCode, open, nil
	}
	return credentials.FlowDeviceCode, nil, nil
}
