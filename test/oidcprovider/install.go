package oidcprovider

import (
	"context"
	"io"

	"tether.dev/tether/test/npmdeps"
)

// ensureNodeModules installs the provider's Node packages (oidc-provider,
// jose) in dir unless they are installed already.
func ensureNodeModules(ctx context.Context, dir string, log io.Writer) error {
	return npmdeps.Ensure(ctx, dir, "oidcprovider", log)
}
