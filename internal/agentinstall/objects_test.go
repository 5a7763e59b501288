package agentinstall

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

// testCA returns a self-signed CA certificate, PEM.
func testCA(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestObjectsRejects(t *testing.T) {
	ok := Options{HubURL: "https://hub.example.com"}
	tests := []struct {
		name   string
		change func(o *Options)
		want   string
	}{
		{"no hub", func(o *Options) { o.HubURL = "" }, "must be https://HOST[:PORT]"},
		{"http hub", func(o *Options) { o.HubURL = "http://hub.example.com" }, "must be https://HOST[:PORT]"},
		{"hub with query", func(o *Options) { o.HubURL = "https://hub.example.com/?x=1" }, "must be https://HOST[:PORT]"},
		{"hub with user", func(o *Options) { o.HubURL = "https://u:p@hub.example.com" }, "must be https://HOST[:PORT]"},
		{"bad namespace", func(o *Options) { o.Namespace = "Tether_System" }, `namespace "Tether_System"`},
		{"kube-system", func(o *Options) { o.Namespace = "kube-system" }, "is the cluster's own"},
		{"default namespace", func(o *Options) { o.Namespace = "default" }, "is the cluster's own"},
		{"unknown mode", func(o *Options) { o.Mode = "azure-rbac" }, `mode "azure-rbac": want kubernetes-rbac or hub-rbac`},
		{"image with space", func(o *Options) { o.Image = "a b" }, "white space"},
		{"token with newline", func(o *Options) { o.JoinToken = "tjt_x\n" }, "join token contains white space"},
		{"socks proxy", func(o *Options) { o.HTTPSProxy = "socks5://proxy:1080" }, "must be an http:// or https:// URL"},
		{"proxy without host", func(o *Options) { o.HTTPSProxy = "http://" }, "must be an http:// or https:// URL"},
		{"no-proxy with spaces", func(o *Options) { o.NoProxy = "a, b" }, "no spaces"},
		{"hub CA not PEM", func(o *Options) { o.HubCA = []byte("hello") }, "hub CA: not a PEM bundle"},
		{"hub CA a key", func(o *Options) {
			o.HubCA = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
		}, `hub CA: PEM block 1 is a "PRIVATE KEY"`},
		{"proxy CA garbage", func(o *Options) {
			o.ProxyCA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
		}, "proxy CA: certificate 1:"},
		{"proxy CA trailing junk", func(o *Options) { o.ProxyCA = append(testCA(t, "p"), "junk"...) }, "proxy CA: not a PEM bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.change(&o)
			_, err := Objects(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Objects: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// decoded is what the tests read of Objects' result, every object decoded
// strictly into its Go type.
type decoded struct {
	kinds       []string
	clusterRole *rbacv1.ClusterRole
	role        *rbacv1.Role
	configMap   *corev1.ConfigMap
	secret      *corev1.Secret
	deploy      *appsv1.Deployment
}

func decode(t *testing.T, objs []*unstructured.Unstructured) decoded {
	t.Helper()
	var d decoded
	for _, u := range objs {
		d.kinds = append(d.kinds, u.GetKind())
		if diff := cmp.Diff(labels(), u.GetLabels()); diff != "" {
			t.Errorf("%s %s labels (-want +got):\n%s", u.GetKind(), u.GetName(), diff)
		}
		obj, err := scheme.Scheme.New(u.GroupVersionKind())
		if err != nil {
			t.Fatal(err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, obj, true); err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			d.clusterRole = o
		case *rbacv1.Role:
			d.role = o
		case *corev1.ConfigMap:
			d.configMap = o
		case *corev1.Secret:
			d.secret = o
		case *appsv1.Deployment:
			d.deploy = o
		}
	}
	return d
}

func (d decoded) container(t *testing.T) corev1.Container {
	t.Helper()
	if d.deploy == nil || len(d.deploy.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want a Deployment with one container, got %+v", d.deploy)
	}
	return d.deploy.Spec.Template.Spec.Containers[0]
}

func env(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			ref := e.ValueFrom.SecretKeyRef
			m[e.Name] = "secret:" + ref.Name + "/" + ref.Key
			continue
		}
		m[e.Name] = e.Value
	}
	return m
}

func TestObjectsDefaults(t *testing.T) {
	objs, err := Objects(Options{HubURL: "https://hub.example.com:8443", JoinToken: "tjt_secret"})
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, objs)
	if diff := cmp.Diff([]string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret", "Deployment"}, d.kinds); diff != "" {
		t.Errorf("kinds in apply order (-want +got):\n%s", diff)
	}
	for _, u := range objs {
		wantNS := DefaultNamespace
		switch u.GetKind() {
		case "Namespace":
			wantNS = ""
			if u.GetName() != DefaultNamespace {
				t.Errorf("namespace name %q, want %q", u.GetName(), DefaultNamespace)
			}
		case "ClusterRole", "ClusterRoleBinding":
			wantNS = ""
		}
		if u.GetNamespace() != wantNS {
			t.Errorf("%s %s in namespace %q, want %q", u.GetKind(), u.GetName(), u.GetNamespace(), wantNS)
		}
		if _, ok := u.Object["status"]; ok {
			t.Errorf("%s %s has a status", u.GetKind(), u.GetName())
		}
		if len(u.GetAnnotations()) != 0 {
			t.Errorf("%s %s has annotations %v without a cluster ID", u.GetKind(), u.GetName(), u.GetAnnotations())
		}
	}

	c := d.container(t)
	got := struct {
		Image     string
		Args      []string
		Env       map[string]string
		Resources corev1.ResourceList
		Limits    corev1.ResourceList
		Replicas  int32
		Strategy  appsv1.DeploymentStrategyType
		Account   string
		Volumes   int
	}{c.Image, c.Args, env(c), c.Resources.Requests, c.Resources.Limits, *d.deploy.Spec.Replicas, d.deploy.Spec.Strategy.Type,
		d.deploy.Spec.Template.Spec.ServiceAccountName, len(d.deploy.Spec.Template.Spec.Volumes)}
	want := struct {
		Image     string
		Args      []string
		Env       map[string]string
		Resources corev1.ResourceList
		Limits    corev1.ResourceList
		Replicas  int32
		Strategy  appsv1.DeploymentStrategyType
		Account   string
		Volumes   int
	}{
		Image: "ghcr.io/tether-dev/tether:" + ImageTag,
		Args: []string{"agent", "--hub=https://hub.example.com:8443", "--state-secret=tether-system/tether-agent-state",
			"--health-probe-bind-address=:8081", "--metrics-bind-address=:8080"},
		Env:       map[string]string{"TETHER_JOIN_TOKEN": "secret:tether-agent-join-token/token"},
		Resources: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:    corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		Replicas:  1,
		Strategy:  appsv1.RecreateDeploymentStrategyType,
		Account:   Name,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("deployment (-want +got):\n%s", diff)
	}

	sc, psc := c.SecurityContext, d.deploy.Spec.Template.Spec.SecurityContext
	if !*psc.RunAsNonRoot || *psc.RunAsUser != 65532 || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		!*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		!*d.deploy.Spec.Template.Spec.AutomountServiceAccountToken {
		t.Errorf("security context: pod %+v, container %+v", psc, sc)
	}
	if c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Port.StrVal != "health" ||
		len(c.Ports) != 2 || c.Ports[0].Name != "health" || c.Ports[0].ContainerPort != HealthPort || c.Ports[1].Name != "metrics" || c.Ports[1].ContainerPort != MetricsPort {
		t.Errorf("probes: liveness %+v readiness %+v ports %+v", c.LivenessProbe, c.ReadinessProbe, c.Ports)
	}

	// The token is in the Secret and nowhere else.
	if string(d.secret.Data[JoinTokenKey]) != "tjt_secret" || d.secret.Name != JoinTokenSecretName {
		t.Errorf("secret %s holds %q", d.secret.Name, d.secret.Data)
	}
	for _, u := range objs {
		b, _ := json.Marshal(u.Object)
		if u.GetKind() != "Secret" && strings.Contains(string(b), "tjt_secret") {
			t.Errorf("the join token is in the %s: %s", u.GetKind(), b)
		}
	}

	wantRole := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{StateSecretName}, Verbs: []string{"get", "update"}},
	}
	if diff := cmp.Diff(wantRole, d.role.Rules); diff != "" {
		t.Errorf("role rules (-want +got):\n%s", diff)
	}
}

func TestObjectsModes(t *testing.T) {
	impersonation := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}},
	}
	hubRBAC := append(append([]rbacv1.PolicyRule(nil), impersonation...),
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterrolebindings", "rolebindings"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"},
			ResourceNames: []string{"view", "edit", "admin", "cluster-admin"}, Verbs: []string{"bind"}},
	)
	tests := []struct {
		name string
		mode string
		want []rbacv1.PolicyRule
	}{
		{"default is kubernetes-rbac", "", impersonation},
		{"kubernetes-rbac", ModeKubernetesRBAC, impersonation},
		{"hub-rbac", ModeHubRBAC, hubRBAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Objects(Options{HubURL: "https://hub.example.com", Mode: tt.mode})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, decode(t, objs).clusterRole.Rules); diff != "" {
				t.Errorf("cluster role rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestObjectsTrust(t *testing.T) {
	hubCA, proxyCA := testCA(t, "hub"), testCA(t, "proxy")
	// Surrounding white space is trimmed and one newline ends each bundle.
	messyProxyCA := append(append([]byte("\n\n"), proxyCA...), "\n\n"...)
	sum := func(b ...[]byte) string {
		h := sha256.New()
		for _, p := range b {
			h.Write(p)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	type result struct {
		HubCAArg  bool
		Env       map[string]string
		ConfigMap map[string]string
		Checksum  string
		Mounted   bool
	}
	tests := []struct {
		name string
		opts Options
		want result
	}{
		{"system roots", Options{}, result{Env: map[string]string{}}},
		{"hub CA", Options{HubCA: hubCA}, result{
			HubCAArg:  true,
			Env:       map[string]string{},
			ConfigMap: map[string]string{HubCAKey: string(hubCA)},
			Checksum:  sum(hubCA),
			Mounted:   true,
		}},
		{"proxy without CA", Options{HTTPSProxy: "http://proxy.corp:3128", NoProxy: ".corp,10.0.0.0/8"}, result{
			Env: map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".corp,10.0.0.0/8"},
		}},
		{"proxy CA with system roots", Options{HTTPSProxy: "http://proxy.corp:3128", ProxyCA: messyProxyCA}, result{
			Env:       map[string]string{"HTTPS_PROXY": "http://proxy.corp:3128", "SSL_CERT_FILE": "/etc/tether/ca/proxy-ca.crt"},
			ConfigMap: map[string]string{ProxyCAKey: string(proxyCA)},
			Checksum:  sum(proxyCA),
			Mounted:   true,
		}},
		{"proxy CA with hub CA", Options{HTTPSProxy: "https://proxy.corp:3129", HubCA: hubCA, ProxyCA: proxyCA}, result{
			HubCAArg:  true,
			Env:       map[string]string{"HTTPS_PROXY": "https://proxy.corp:3129"},
			ConfigMap: map[string]string{HubCAKey: string(hubCA) + string(proxyCA), ProxyCAKey: string(proxyCA)},
			Checksum:  sum(hubCA, proxyCA),
			Mounted:   true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.HubURL = "https://hub.example.com"
			objs, err := Objects(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			d := decode(t, objs)
			c := d.container(t)
			e := env(c)
			delete(e, "TETHER_JOIN_TOKEN")
			got := result{Env: e, Checksum: d.deploy.Spec.Template.Annotations[CAChecksumAnnotation]}
			for _, a := range c.Args {
				got.HubCAArg = got.HubCAArg || a == "--hub-ca=/etc/tether/ca/hub-ca.crt"
			}
			if d.configMap != nil {
				got.ConfigMap = d.configMap.Data
			}
			got.Mounted = len(c.VolumeMounts) == 1 && c.VolumeMounts[0].MountPath == CADir &&
				d.deploy.Spec.Template.Spec.Volumes[0].ConfigMap.Name == CAConfigMapName
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestObjectsClusterID(t *testing.T) {
	objs, err := Objects(Options{HubURL: "https://hub.example.com", ClusterID: "/groups/prod/clusters/edge-12", Namespace: "agents"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if got := u.GetAnnotations()[ClusterIDAnnotation]; got != "/groups/prod/clusters/edge-12" {
			t.Errorf("%s %s: cluster ID annotation %q", u.GetKind(), u.GetName(), got)
		}
	}
	d := decode(t, objs)
	if got := d.container(t).Args[2]; got != "--state-secret=agents/tether-agent-state" {
		t.Errorf("state secret arg %q", got)
	}
	if d.secret != nil {
		t.Errorf("a join-token Secret without a join token: %+v", d.secret)
	}
}
