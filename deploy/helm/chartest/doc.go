// Package chartest checks the Helm charts under deploy/helm with Helm v4 as
// a library: it lints each chart, renders it, decodes every object strictly
// into its Kubernetes type and checks the result.
//
// The agent's chart (deploy/helm/tether-agent) is compared with what `tether
// cluster connect` applies (internal/agentinstall.Objects) for the same
// inputs. The hub's chart (deploy/helm/tether-hub) has no such counterpart:
// its objects are checked against the hub's flags and against each other
// (selectors, ports, mounts, the grace period that covers the drain).
//
// It is a module of its own so that Helm's many dependencies never move the
// main module's versions. After the main module's go.mod changes, run
// `go mod tidy` here.
package chartest
