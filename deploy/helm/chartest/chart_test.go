package chartest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/internal/agentinstall"
)

const (
	chartDir = "../tether-agent"
	// release is the release name whose objects have the names Objects
	// uses: the chart's fullname is the release name when it contains the
	// chart's name.
	release = "tether-agent"
)

func TestMain(m *testing.M) {
	// Helm logs template failures in lint mode to the default logger.
	slog.SetDefault(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// render renders the chart as `helm template --strict` would for an
// install of release into namespace, and returns each manifest file's
// text by its name in the chart (templates/deployment.yaml).
func render(ch *chart.Chart, releaseName, namespace string, values map[string]any) (map[string]string, error) {
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, nil)
	if err != nil {
		return nil, err
	}
	// Strict: a template that refers to a value not in values.yaml fails.
	rendered, err := engine.Engine{Strict: true}.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, text := range rendered {
		if path.Ext(name) == ".yaml" {
			out[strings.TrimPrefix(name, ch.Name()+"/")] = text
		}
	}
	return out, nil
}

// strict decodes YAML or JSON into the object's Go type, refusing unknown
// and duplicate fields.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// decodeManifests decodes every object of the rendered files strictly and
// returns them as unstructured maps, keyed "Kind namespace/name".
func decodeManifests(t *testing.T, files map[string]string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		r := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(files[name])))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if j, err := yaml.YAMLToJSON(doc); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			} else if string(j) == "null" {
				continue // a template that rendered nothing
			}
			addDecoded(t, out, name, doc)
		}
	}
	return out
}

func addDecoded(t *testing.T, into map[string]map[string]any, source string, data []byte) {
	t.Helper()
	obj, gvk, err := strict.Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("%s: %v\n%s", source, err, data)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	key := fmt.Sprintf("%s %s/%s", gvk.Kind, u.GetNamespace(), u.GetName())
	if _, dup := into[key]; dup {
		t.Fatalf("%s: %s twice", source, key)
	}
	into[key] = m
}

// decodeObjects puts Objects' result through the same strict decoding.
func decodeObjects(t *testing.T, objs []*unstructured.Unstructured) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		addDecoded(t, out, "Objects", b)
	}
	return out
}

// normalise removes, in place, what legitimately differs between a Helm
// release of the chart and what Objects makes:
//
//   - the labels helm.sh/chart, app.kubernetes.io/instance and
//     app.kubernetes.io/version: Helm's conventions for telling releases
//     and chart versions apart (instance also selects the Deployment's pods,
//     so that two releases never adopt each other's pods);
//   - app.kubernetes.io/managed-by, Helm for the chart and tether for
//     Objects: Remove relies on it to leave a Helm release alone;
//   - Objects' Namespace: a chart installs into the release's namespace
//     (helm install --namespace N --create-namespace) and does not own it.
func normalise(objs map[string]map[string]any) {
	for key, m := range objs {
		if strings.HasPrefix(key, "Namespace ") {
			delete(objs, key)
			continue
		}
		for _, p := range [][]string{
			{"metadata", "labels"},
			{"spec", "selector", "matchLabels"},
			{"spec", "template", "metadata", "labels"},
		} {
			labels, ok, _ := unstructured.NestedMap(m, p...)
			if !ok {
				continue
			}
			delete(labels, "helm.sh/chart")
			delete(labels, "app.kubernetes.io/instance")
			delete(labels, "app.kubernetes.io/version")
			if labels[agentinstall.ManagedByLabel] == "Helm" {
				labels[agentinstall.ManagedByLabel] = agentinstall.ManagedBy
			}
			unstructured.SetNestedMap(m, labels, p...)
		}
	}
}

// values are the chart values that ask for what o asks of Objects.
func values(t *testing.T, o agentinstall.Options) map[string]any {
	t.Helper()
	v := map[string]any{
		"hub":       map[string]any{"url": o.HubURL, "ca": string(o.HubCA)},
		"joinToken": map[string]any{"value": o.JoinToken},
		"clusterID": o.ClusterID,
		"proxy":     map[string]any{"httpsProxy": o.HTTPSProxy, "noProxy": o.NoProxy, "caBundle": string(o.ProxyCA)},
	}
	if o.Mode != "" {
		v["mode"] = o.Mode
	}
	if o.Image != "" {
		i := strings.LastIndex(o.Image, ":")
		v["image"] = map[string]any{"repository": o.Image[:i], "tag": o.Image[i+1:]}
	}
	if o.Resources.Requests != nil || o.Resources.Limits != nil {
		r, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&o.Resources)
		if err != nil {
			t.Fatal(err)
		}
		v["resources"] = r
	}
	return v
}

func namespace(o agentinstall.Options) string {
	if o.Namespace == "" {
		return agentinstall.DefaultNamespace
	}
	return o.Namespace
}

// testCA returns a self-signed CA certificate, PEM.
func testCA(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// cases are the inputs the chart and Objects are compared on: both modes,
// with and without a proxy.
func cases(t *testing.T) []struct {
	name string
	opts agentinstall.Options
} {
	hubCA, proxyCA := testCA(t, "hub"), testCA(t, "proxy")
	return []struct {
		name string
		opts agentinstall.Options
	}{
		{"defaults", agentinstall.Options{HubURL: "https://hub.example.com"}},
		{"kubernetes-rbac", agentinstall.Options{
			HubURL: "https://hub.example.com:8443", HubCA: hubCA, JoinToken: "tjt_abc",
			ClusterID: "/groups/prod/clusters/edge-12", Mode: agentinstall.ModeKubernetesRBAC,
		}},
		{"kubernetes-rbac through a proxy", agentinstall.Options{
			Namespace: "agents", Image: "registry.corp.example/tether:v1.2.3",
			HubURL: "https://hub.example.com", HubCA: hubCA, JoinToken: "tjt_def",
			Mode:       agentinstall.ModeKubernetesRBAC,
			HTTPSProxy: "http://proxy.corp.example:3128", NoProxy: ".corp.example,10.0.0.0/8", ProxyCA: proxyCA,
			// Every key of the chart's default resources, so that Helm's
			// merge of values replaces them all, as Options does.
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
			},
		}},
		{"hub-rbac", agentinstall.Options{
			HubURL: "https://hub.example.com", HubCA: hubCA, JoinToken: "tjt_ghi",
			ClusterID: "/groups/prod/clusters/edge-13", Mode: agentinstall.ModeHubRBAC,
		}},
		{"hub-rbac through a TLS-intercepting proxy", agentinstall.Options{
			HubURL: "https://hub.example.com", JoinToken: "tjt_jkl", Mode: agentinstall.ModeHubRBAC,
			HTTPSProxy: "https://proxy.corp.example:3129", NoProxy: "localhost", ProxyCA: proxyCA,
		}},
	}
}

func TestChartMatchesObjects(t *testing.T) {
	ch := loadChart(t)
	for _, tt := range cases(t) {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := agentinstall.Objects(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			want := decodeObjects(t, objs)
			files, err := render(ch, release, namespace(tt.opts), values(t, tt.opts))
			if err != nil {
				t.Fatal(err)
			}
			got := decodeManifests(t, files)
			normalise(want)
			normalise(got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Objects (-want) and the chart (+got) differ:\n%s", diff)
			}
		})
	}
}

func TestChartVersion(t *testing.T) {
	ch := loadChart(t)
	got := []any{ch.Metadata.APIVersion, ch.Metadata.AppVersion, ch.Values["image"].(map[string]any)["repository"]}
	want := []any{"v2", agentinstall.ImageTag, agentinstall.ImageRepository}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("apiVersion, appVersion, image.repository (-want +got):\n%s", diff)
	}
}

func TestChartLint(t *testing.T) {
	for _, tt := range cases(t) {
		t.Run(tt.name, func(t *testing.T) {
			linter := lint.RunAll(chartDir, values(t, tt.opts), namespace(tt.opts))
			var problems []string
			for _, m := range linter.Messages {
				if m.Severity >= support.WarningSev {
					problems = append(problems, m.Error())
				}
			}
			if len(problems) > 0 {
				t.Errorf("helm lint:\n%s", strings.Join(problems, "\n"))
			}
		})
	}
	t.Run("values.yaml alone", func(t *testing.T) {
		// Lint mode reports a missing hub.url without failing.
		linter := lint.RunAll(chartDir, nil, "tether-system")
		if linter.HighestSeverity >= support.WarningSev {
			t.Errorf("helm lint: %v", linter.Messages)
		}
	})
}

func TestChartRefuses(t *testing.T) {
	ch := loadChart(t)
	tests := []struct {
		name   string
		values string
		want   string
	}{
		{"no hub", `{}`, "hub.url is required"},
		{"http hub", `hub: {url: "http://hub.example.com"}`, `hub.url "http://hub.example.com" must be https://HOST[:PORT]`},
		{"unknown mode", `{hub: {url: "https://h"}, mode: azure-rbac}`, `mode "azure-rbac": want kubernetes-rbac or hub-rbac`},
		{"two join tokens", `{hub: {url: "https://h"}, joinToken: {existingSecret: s, value: tjt_x}}`, "set joinToken.existingSecret or joinToken.value, not both"},
		{"socks proxy", `{hub: {url: "https://h"}, proxy: {httpsProxy: "socks5://p:1080"}}`, "must be an http:// or https:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(tt.values), &v); err != nil {
				t.Fatal(err)
			}
			_, err := render(ch, release, "tether-system", v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestChartValues covers the values Objects has no counterpart for.
func TestChartValues(t *testing.T) {
	ch := loadChart(t)
	type summary struct {
		Objects        []string
		TokenSecretRef string
		ServiceAccount string
		Subjects       []string
		Pod            map[string]any
		// Annotations of the ServiceAccount.
		AccountAnnotations map[string]string
	}
	summarise := func(t *testing.T, objs map[string]map[string]any) summary {
		var s summary
		for _, key := range slices.Sorted(maps.Keys(objs)) {
			m := objs[key]
			s.Objects = append(s.Objects, key)
			if strings.HasPrefix(key, "ServiceAccount ") {
				s.AccountAnnotations, _, _ = unstructured.NestedStringMap(m, "metadata", "annotations")
			}
			subjects, _, _ := unstructured.NestedSlice(m, "subjects")
			for _, sub := range subjects {
				s.Subjects = append(s.Subjects, fmt.Sprint(sub.(map[string]any)["namespace"], "/", sub.(map[string]any)["name"]))
			}
			if !strings.HasPrefix(key, "Deployment ") {
				continue
			}
			pod, _, _ := unstructured.NestedMap(m, "spec", "template", "spec")
			s.ServiceAccount, _ = pod["serviceAccountName"].(string)
			c := pod["containers"].([]any)[0].(map[string]any)
			ref := c["env"].([]any)[0].(map[string]any)["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
			s.TokenSecretRef = fmt.Sprint(ref["name"], "/", ref["key"])
			s.Pod = map[string]any{}
			for _, k := range []string{"nodeSelector", "tolerations", "affinity", "imagePullSecrets"} {
				if v, ok := pod[k]; ok {
					s.Pod[k] = v
				}
			}
			annotations, _, _ := unstructured.NestedStringMap(m, "spec", "template", "metadata", "annotations")
			labels, _, _ := unstructured.NestedStringMap(m, "spec", "template", "metadata", "labels")
			s.Pod["annotations"], s.Pod["team-label"] = annotations, labels["team"]
		}
		return s
	}
	tests := []struct {
		name    string
		release string
		values  string
		want    summary
	}{
		{
			name:    "join token from an existing Secret",
			release: release,
			values: `{hub: {url: "https://h"}, joinToken: {existingSecret: tether-join, key: jt}, clusterID: /groups/g/clusters/c,
				serviceAccount: {annotations: {example.com/role: agent}}}`,
			want: summary{
				Objects: []string{
					"ClusterRole /tether-agent", "ClusterRoleBinding /tether-agent", "Deployment ns/tether-agent",
					"Role ns/tether-agent", "RoleBinding ns/tether-agent", "ServiceAccount ns/tether-agent",
				},
				TokenSecretRef:     "tether-join/jt",
				ServiceAccount:     "tether-agent",
				Subjects:           []string{"ns/tether-agent", "ns/tether-agent"},
				Pod:                map[string]any{"annotations": map[string]string(nil), "team-label": ""},
				AccountAnnotations: map[string]string{"example.com/role": "agent", "tether.dev/cluster-id": "/groups/g/clusters/c"},
			},
		},
		{
			name:    "another release name, an existing service account, scheduling",
			release: "edge",
			values: `{hub: {url: "https://h"}, joinToken: {value: tjt_x}, serviceAccount: {create: false, name: agent-sa},
				nodeSelector: {kubernetes.io/os: linux}, tolerations: [{key: dedicated, operator: Exists}],
				affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}},
				imagePullSecrets: [{name: regcred}], podAnnotations: {a: b}, podLabels: {team: edge}}`,
			want: summary{
				Objects: []string{
					"ClusterRole /edge-tether-agent", "ClusterRoleBinding /edge-tether-agent", "Deployment ns/edge-tether-agent",
					"Role ns/edge-tether-agent", "RoleBinding ns/edge-tether-agent", "Secret ns/edge-tether-agent-join-token",
				},
				TokenSecretRef: "edge-tether-agent-join-token/token",
				ServiceAccount: "agent-sa",
				Subjects:       []string{"ns/agent-sa", "ns/agent-sa"},
				Pod: map[string]any{
					"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
					"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Exists"}},
					"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
						"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "zone", "operator": "In", "values": []any{"a"}}}}},
					}}},
					"imagePullSecrets": []any{map[string]any{"name": "regcred"}},
					"annotations":      map[string]string{"a": "b"},
					"team-label":       "edge",
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(tt.values), &v); err != nil {
				t.Fatal(err)
			}
			files, err := render(ch, tt.release, "ns", v)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarise(t, decodeManifests(t, files))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotes renders NOTES.txt, which Helm prints after an install.
func TestNotes(t *testing.T) {
	ch := loadChart(t)
	vals, err := util.ToRenderValues(ch, map[string]any{"hub": map[string]any{"url": "https://hub.example.com"}},
		common.ReleaseOptions{Name: release, Namespace: "tether-system", IsInstall: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := engine.Engine{Strict: true}.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	notes := rendered[ch.Name()+"/templates/NOTES.txt"]
	for _, want := range []string{
		"kubectl --namespace tether-system logs deploy/tether-agent",
		"No join token was given",
	} {
		if !bytes.Contains([]byte(notes), []byte(want)) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
}
