// Package chartest checks the agent's Helm chart (deploy/helm/tether-agent)
// with Helm v4 as a library: it lints the chart, renders it, decodes every
// object strictly into its Kubernetes type and compares the result with
// what `tether cluster connect` applies (internal/agentinstall.Objects) for
// the same inputs.
//
// It is a module of its own so that Helm's many dependencies never move the
// main module's versions. After the main module's go.mod changes, run
// `go mod tidy` here.
package chartest
