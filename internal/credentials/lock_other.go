//go:build !unix

package credentials

import (
	"context"
	"errors"
	"os"
)

var errUnsupported = errors.New("token cache: file locking and permission checks are implemented only on Unix")

func lockFile(context.Context, *os.File) error { return errUnsupported }
func checkPrivate(string, bool) error          { return errUnsupported }
func checkPrivateFile(*os.File, string) error  { return errUnsupported }
