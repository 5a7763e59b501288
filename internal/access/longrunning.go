package access

// Kinds of long-running requests (LongRunningKind), the label values of the
// hub's and the agent's in-flight gauges.
const (
	KindWatch       = "watch"
	KindExec        = "exec"
	KindAttach      = "attach"
	KindPortForward = "portforward"
	KindLog         = "log"
	// KindProxy is the proxy verb or subresource, and any other upgrade.
	KindProxy = "proxy"
)

// LongRunningKinds returns every kind LongRunningKind may return.
func LongRunningKinds() []string {
	return []string{KindWatch, KindExec, KindAttach, KindPortForward, KindLog, KindProxy}
}

// LongRunningKind says whether a request (its verb and subresource as
// ParseRequest reads them; upgrade: it asks for a protocol upgrade) is
// long-running, as kube-apiserver decides for its request duration metric
// (the verbs watch and proxy, the subresources attach, exec, log,
// portforward and proxy), plus any other upgrade: its kind, or "" for a
// request whose duration means something.
func LongRunningKind(verb, subresource string, upgrade bool) string {
	switch {
	case verb == "watch":
		return KindWatch
	case subresource == "exec", subresource == "attach", subresource == "portforward", subresource == "log":
		return subresource
	case verb == "proxy", subresource == "proxy", upgrade:
		return KindProxy
	}
	return ""
}

// MetricVerbs returns the verb labels of requests that are not
// long-running, as MetricVerb names them.
func MetricVerbs() []string {
	return []string{"get", "list", "create", "update", "patch", "delete", "deletecollection", "other"}
}

// MetricVerb is a request's verb as a metric label: the Kubernetes verb
// (the exec, attach, portforward and proxy subresources are "connect", as
// kube-apiserver counts them), a non-resource request's by its method's
// meaning, and anything else "other", so that no client can make up new
// series.
func MetricVerb(verb, subresource string) string {
	switch subresource {
	case "exec", "attach", "portforward", "proxy":
		return "connect"
	}
	switch verb {
	case "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy":
		return verb
	case "head":
		return "get"
	case "post":
		return "create"
	case "put":
		return "update"
	}
	return "other"
}
