// Command rig-node is the test rig's Kubernetes node: a kubelet API server,
// built on virtual-kubelet, whose pods are local processes (see package
// procpods for how pods run, where their files are and what they support).
//
//	rig-node --kubeconfig FILE --node-name NAME --node-ip IP --listen-addr IP:PORT \
//	  --tls-cert-file FILE --tls-private-key-file FILE --client-ca-file FILE --pods-dir DIR
//
// It registers the Node NAME (InternalIP --node-ip, Ready, 8 CPUs, 16Gi of
// memory, 110 pods, kubelet port from --listen-addr), renews its Lease, runs
// the pods the scheduler binds to it and pushes their status.
//
// Who dials whom:
//
//	rig-node ──(client cert system:node:NAME, --kubeconfig)──▶ kube-apiserver
//	kube-apiserver ──(TLS, its kubelet client cert)──▶ rig-node --listen-addr
//
// The kubelet API (logs, exec, attach, port-forward, pods, stats) is served
// with TLS on --listen-addr and authenticates every request like the
// kubelet's webhook mode: a client certificate signed by --client-ca-file, or
// a bearer token checked with a TokenReview; then authorizes it with a
// SubjectAccessReview on nodes/<subresource> NAME (proxy, log, stats,
// metrics). Unauthenticated requests get 401, unauthorized ones 403. The
// extra RBAC the node needs is in rbac.yaml beside this file.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rig-node:", err)
		os.Exit(exitCode(err))
	}
}
