// Package agentinstall makes and applies the Kubernetes objects that run the
// Tether agent in a cluster: what `tether cluster connect` installs, and what
// the Helm chart in deploy/helm/tether-agent renders (a test in
// deploy/helm/chartest keeps the two the same).
//
//	tether cluster connect ── server-side apply (field manager "tether") ──► kube-apiserver
//	                                                                           │
//	  Namespace tether-system                                                  ▼
//	  ServiceAccount, ClusterRole(Binding), Role(Binding)      agent pod ── dials out ──► hub
//	  ConfigMap (CAs), Secret (join token), Deployment
//
// Objects only builds and validates; Apply, Remove and Diagnose talk to the
// API server.
package agentinstall

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"tether.dev/tether/internal/access"
)

// The image installed by default: the release this package belongs to. The
// chart's appVersion is ImageTag.
const (
	ImageRepository = "ghcr.io/tether-dev/tether"
	ImageTag        = "v0.1.0"
)

// DefaultNamespace is where the agent runs unless Options.Namespace says
// otherwise.
const DefaultNamespace = "tether-system"

// Names of the objects Objects makes.
const (
	// Name names the ServiceAccount, ClusterRole, ClusterRoleBinding, Role,
	// RoleBinding and Deployment, and is the app.kubernetes.io/name label.
	Name = "tether-agent"
	// StateSecretName is the Secret the agent keeps its key and cluster ID
	// in; the agent creates it, Objects only grants access to it.
	StateSecretName = "tether-agent-state"
	// JoinTokenSecretName holds the join token under JoinTokenKey.
	JoinTokenSecretName = "tether-agent-join-token"
	JoinTokenKey        = "token"
	// CAConfigMapName holds the hub's CA (HubCAKey) and the proxy's CA
	// (ProxyCAKey), mounted at CADir.
	CAConfigMapName = "tether-agent-ca"
	HubCAKey        = "hub-ca.crt"
	ProxyCAKey      = "proxy-ca.crt"
	CADir           = "/etc/tether/ca"
	// ContainerName is the agent's container in the Deployment's pod.
	ContainerName = "agent"
)

// Labels on every object Objects makes. Remove finds cluster-scoped objects
// by both.
const (
	NameLabel      = "app.kubernetes.io/name"
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "tether"
	// Selector selects every object Objects makes.
	Selector = NameLabel + "=" + Name + "," + ManagedByLabel + "=" + ManagedBy
)

// Annotations Objects sets.
const (
	// ClusterIDAnnotation carries Options.ClusterID on every object.
	ClusterIDAnnotation = "tether.dev/cluster-id"
	// CAChecksumAnnotation, on the pod template, is the SHA-256 of the CA
	// bundle, so a changed CA restarts the agent (it reads the files once).
	CAChecksumAnnotation = "tether.dev/ca-sha256"
)

// Cluster modes (the hub's names).
const (
	ModeKubernetesRBAC = "kubernetes-rbac"
	ModeHubRBAC        = "hub-rbac"
)

// The agent's ports: HealthPort serves /livez and /readyz (`tether agent
// --health-probe-bind-address`), MetricsPort serves /metrics
// (--metrics-bind-address).
const (
	HealthPort  = 8081
	MetricsPort = 8080
)

// FieldManager is the server-side apply field manager of Apply.
const FieldManager = "tether"

// Options say how to install the agent.
type Options struct {
	// Namespace is where the agent runs. Empty means DefaultNamespace. It
	// may not be default, kube-system, kube-public or kube-node-lease:
	// Remove deletes the namespace.
	Namespace string
	// Image is the agent's image, whose entrypoint is the tether binary.
	// Empty means ImageRepository:ImageTag.
	Image string
	// HubURL is the hub, https://HOST[:PORT]. Required.
	HubURL string
	// HubCA is the PEM bundle the hub's certificate is checked against;
	// when set, only it (and ProxyCA) is trusted for the hub. Empty means
	// the image's system roots.
	HubCA []byte
	// JoinToken is the cluster's one-time join token. It goes into the
	// Secret JoinTokenSecretName, never into the Deployment. Empty means no
	// Secret: an agent that has enrolled needs none.
	JoinToken string
	// ClusterID is the hub's ID of the cluster, set as the annotation
	// ClusterIDAnnotation on every object; it changes nothing else.
	ClusterID string
	// Mode is ModeKubernetesRBAC (the default: impersonation only) or
	// ModeHubRBAC (also what the agent needs to keep the role bindings of
	// hub-RBAC mode).
	Mode string
	// HTTPSProxy is the agent's HTTPS_PROXY for the hub connection, an
	// http:// or https:// URL; NoProxy its NO_PROXY. The agent never uses a
	// proxy for the API server.
	HTTPSProxy, NoProxy string
	// ProxyCA is a PEM bundle also trusted for the hub connection, for a
	// proxy that intercepts TLS. With HubCA it is added to the --hub-ca
	// bundle; without, SSL_CERT_FILE points at it (Go then trusts it and
	// the image's roots in /etc/ssl/certs).
	ProxyCA []byte
	// Resources of the agent's container. Zero requests mean 50m CPU and
	// 64Mi memory; zero limits mean 256Mi memory.
	Resources corev1.ResourceRequirements
}

// reservedNamespaces are never used for the agent: Remove deletes its
// namespace.
var reservedNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
		return o, fmt.Errorf("namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
	}
	if slices.Contains(reservedNamespaces, o.Namespace) {
		return o, fmt.Errorf("namespace %q is the cluster's own; the agent needs a namespace of its own (removing the agent deletes it)", o.Namespace)
	}
	if o.Image == "" {
		o.Image = ImageRepository + ":" + ImageTag
	}
	if strings.ContainsAny(o.Image, " \t\r\n") {
		return o, fmt.Errorf("image %q contains white space", o.Image)
	}
	u, err := url.Parse(o.HubURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return o, fmt.Errorf("hub URL %q must be https://HOST[:PORT]", o.HubURL)
	}
	switch o.Mode {
	case "":
		o.Mode = ModeKubernetesRBAC
	case ModeKubernetesRBAC, ModeHubRBAC:
	default:
		return o, fmt.Errorf("mode %q: want %s or %s", o.Mode, ModeKubernetesRBAC, ModeHubRBAC)
	}
	if strings.ContainsAny(o.JoinToken, " \t\r\n") {
		return o, errors.New("the join token contains white space")
	}
	if o.HTTPSProxy != "" {
		u, err := url.Parse(o.HTTPSProxy)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return o, fmt.Errorf("HTTPS proxy %q must be an http:// or https:// URL", o.HTTPSProxy)
		}
	}
	if strings.ContainsAny(o.NoProxy, " \t\r\n") {
		return o, fmt.Errorf("no-proxy list %q: separate entries with commas, no spaces", o.NoProxy)
	}
	if o.HubCA, err = pemBundle("hub CA", o.HubCA); err != nil {
		return o, err
	}
	if o.ProxyCA, err = pemBundle("proxy CA", o.ProxyCA); err != nil {
		return o, err
	}
	if o.Resources.Requests == nil {
		o.Resources.Requests = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		}
	}
	if o.Resources.Limits == nil {
		o.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	}
	return o, nil
}

// pemBundle checks that b is empty or PEM certificates only, and returns it
// with surrounding white space trimmed and one final newline, which is how
// the chart writes it too.
func pemBundle(what string, b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, nil
	}
	rest := []byte(s)
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if n == 0 || len(strings.TrimSpace(string(rest))) > 0 {
				return nil, fmt.Errorf("%s: not a PEM bundle of certificates", what)
			}
			return []byte(s + "\n"), nil
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is a %q, not a CERTIFICATE", what, n+1, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", what, n+1, err)
		}
	}
}

// Objects returns the objects that install the agent, validated, in the
// order to apply them: Namespace, ServiceAccount, ClusterRole,
// ClusterRoleBinding, Role, RoleBinding, ConfigMap (only with a CA),
// Secret (only with a join token), Deployment. Every object carries the
// labels of Selector.
func Objects(o Options) ([]*unstructured.Unstructured, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("agent install: %w", err)
	}
	meta := func(name string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels()}
		if o.ClusterID != "" {
			m.Annotations = map[string]string{ClusterIDAnnotation: o.ClusterID}
		}
		return m
	}
	clusterMeta := func(name string) metav1.ObjectMeta {
		m := meta(name)
		m.Namespace = ""
		return m
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name, Namespace: o.Namespace}}

	typed := []runtime.Object{
		&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: clusterMeta(o.Namespace)},
		&corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: meta(Name)},
		&rbacv1.ClusterRole{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: clusterMeta(Name),
			Rules: clusterRules(o.Mode)},
		&rbacv1.ClusterRoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: clusterMeta(Name),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: Name},
			Subjects: subject},
		&rbacv1.Role{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta(Name),
			Rules: namespaceRules()},
		&rbacv1.RoleBinding{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta(Name),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: Name},
			Subjects: subject},
	}
	if len(o.HubCA) > 0 || len(o.ProxyCA) > 0 {
		cm := &corev1.ConfigMap{TypeMeta: typeMeta("v1", "ConfigMap"), ObjectMeta: meta(CAConfigMapName), Data: map[string]string{}}
		if len(o.HubCA) > 0 {
			cm.Data[HubCAKey] = string(o.HubCA) + string(o.ProxyCA)
		}
		if len(o.ProxyCA) > 0 {
			cm.Data[ProxyCAKey] = string(o.ProxyCA)
		}
		typed = append(typed, cm)
	}
	if o.JoinToken != "" {
		typed = append(typed, &corev1.Secret{TypeMeta: typeMeta("v1", "Secret"), ObjectMeta: meta(JoinTokenSecretName),
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{JoinTokenKey: []byte(o.JoinToken)}})
	}
	typed = append(typed, deployment(o, meta(Name)))

	out := make([]*unstructured.Unstructured, 0, len(typed))
	for _, obj := range typed {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("agent install: %w", err)
		}
		// Fields a typed object always has that an apply should not send.
		unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(m, "status")
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func labels() map[string]string {
	return map[string]string{NameLabel: Name, ManagedByLabel: ManagedBy}
}

// clusterRules are the agent's cluster-wide permissions; CheckPermissions
// in package agent asks for the same. deploy/agent-rbac.yaml explains each.
func clusterRules(mode string) []rbacv1.PolicyRule {
	rules := []rbacv1.PolicyRule{
		// Forward each caller's request as the caller. RBAC cannot limit
		// which groups; the agent refuses system: groups itself.
		{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}},
		// The node count in the agent's status report.
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
	}
	if mode == ModeHubRBAC {
		rules = append(rules,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterrolebindings", "rolebindings"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			rbacv1.PolicyRule{APIGroups: []string{rbacv1.GroupName}, Resources: []string{"clusterroles"},
				ResourceNames: []string{access.ClusterRoleView, access.ClusterRoleEdit, access.ClusterRoleAdmin, access.ClusterRoleClusterAdmin}, Verbs: []string{"bind"}},
		)
	}
	return rules
}

// namespaceRules let the agent keep its key in StateSecretName. RBAC cannot
// limit create to a name, so the agent may create any Secret in its
// namespace, but read and change only its own.
func namespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{StateSecretName}, Verbs: []string{"get", "update"}},
	}
}

func deployment(o Options, m metav1.ObjectMeta) *appsv1.Deployment {
	args := []string{
		"agent",
		"--hub=" + o.HubURL,
		"--state-secret=" + o.Namespace + "/" + StateSecretName,
		fmt.Sprintf("--health-probe-bind-address=:%d", HealthPort),
		fmt.Sprintf("--metrics-bind-address=:%d", MetricsPort),
	}
	env := []corev1.EnvVar{{
		Name: "TETHER_JOIN_TOKEN",
		// Optional: an enrolled agent needs no token, so the Secret may be
		// deleted; one that has not enrolled says it has none.
		ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: JoinTokenSecretName},
			Key:                  JoinTokenKey,
			Optional:             new(true),
		}},
	}}
	if o.HTTPSProxy != "" {
		env = append(env, corev1.EnvVar{Name: "HTTPS_PROXY", Value: o.HTTPSProxy})
	}
	if o.NoProxy != "" {
		env = append(env, corev1.EnvVar{Name: "NO_PROXY", Value: o.NoProxy})
	}
	if len(o.HubCA) > 0 {
		args = append(args, "--hub-ca="+CADir+"/"+HubCAKey)
	} else if len(o.ProxyCA) > 0 {
		env = append(env, corev1.EnvVar{Name: "SSL_CERT_FILE", Value: CADir + "/" + ProxyCAKey})
	}

	container := corev1.Container{
		Name:            ContainerName,
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "health", ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: MetricsPort, Protocol: corev1.ProtocolTCP},
		},
		LivenessProbe:  httpProbe("/livez"),
		ReadinessProbe: httpProbe("/readyz"),
		Resources:      o.Resources,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		// The agent's last log lines become the termination message, which
		// Diagnose reports when it crashes.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	pod := corev1.PodSpec{
		ServiceAccountName:           Name,
		AutomountServiceAccountToken: new(true), // the agent's own credentials
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   new(true),
			RunAsUser:      new(int64(65532)),
			RunAsGroup:     new(int64(65532)),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	template := metav1.ObjectMeta{Labels: labels()}
	if len(o.HubCA) > 0 || len(o.ProxyCA) > 0 {
		sum := sha256.Sum256(append(append([]byte(nil), o.HubCA...), o.ProxyCA...))
		template.Annotations = map[string]string{CAChecksumAnnotation: hex.EncodeToString(sum[:])}
		container.VolumeMounts = []corev1.VolumeMount{{Name: "ca", MountPath: CADir, ReadOnly: true}}
		pod.Volumes = []corev1.Volume{{Name: "ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: CAConfigMapName}},
		}}}
	}
	pod.Containers = []corev1.Container{container}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: m,
		Spec: appsv1.DeploymentSpec{
			Replicas: new(int32(1)),
			// One agent holds the key: never two at once.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{NameLabel: Name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: template, Spec: pod},
		},
	}
}

func httpProbe(path string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("health")},
	}}
}
