package chartest

import (
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/internal/agentinstall"
)

// The hub chart (deploy/helm/tether-hub) has no Go counterpart to compare
// with: its tests render it and check each object against the hub's flags
// and the way Kubernetes will read it.

const (
	hubChartDir = "../tether-hub"
	// hubRelease gives the objects the name tether-hub.
	hubRelease = "tether-hub"
	hubNS      = "tether"
	// hubRequired are the values every install must set.
	hubRequired = `{url: "https://tether.example.com", store: {existingSecret: tether-hub-store},
		identity: {existingSecret: tether-hub-identity}, tls: {existingSecret: tether-hub-tls}}`
)

func loadHubChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(hubChartDir)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// parseValues parses YAML values; each of more is merged over the ones
// before it, a map key by key, anything else replaced.
func parseValues(t *testing.T, base string, more ...string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(base), &v); err != nil {
		t.Fatal(err)
	}
	for _, s := range more {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			t.Fatal(err)
		}
		v = mergeValues(v, m)
	}
	return v
}

func mergeValues(dst, src map[string]any) map[string]any {
	out := maps.Clone(dst)
	if out == nil {
		out = map[string]any{}
	}
	for k, sv := range src {
		dm, dok := out[k].(map[string]any)
		sm, sok := sv.(map[string]any)
		if dok && sok {
			out[k] = mergeValues(dm, sm)
		} else {
			out[k] = sv
		}
	}
	return out
}

// renderHub renders the chart for release into hubNS and decodes every
// object strictly, keyed "Kind namespace/name".
func renderHub(t *testing.T, ch *chart.Chart, release string, values map[string]any) map[string]map[string]any {
	t.Helper()
	files, err := render(ch, release, hubNS, values)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifests(t, files)
}

// typed returns the object under key as its Go type.
func typed[T any](t *testing.T, objs map[string]map[string]any, key string) *T {
	t.Helper()
	m, ok := objs[key]
	if !ok {
		t.Fatalf("no %s among %v", key, slices.Sorted(maps.Keys(objs)))
	}
	obj := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// hubDeployment renders the chart and returns its one Deployment and the
// hub container.
func hubDeployment(t *testing.T, ch *chart.Chart, release string, values map[string]any) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	objs := renderHub(t, ch, release, values)
	var keys []string
	for k := range objs {
		if strings.HasPrefix(k, "Deployment ") {
			keys = append(keys, k)
		}
	}
	if len(keys) != 1 {
		t.Fatalf("Deployments %v, want one", keys)
	}
	d := typed[appsv1.Deployment](t, objs, keys[0])
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// flagValues returns the value of each --flag=value argument after the
// first (the subcommand).
func flagValues(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Fatalf("argument %q is not --flag=value", a)
		}
		out[name] = value
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

func TestHubChartVersion(t *testing.T) {
	ch := loadHubChart(t)
	got := []any{ch.Metadata.APIVersion, ch.Metadata.Type, ch.Metadata.AppVersion, ch.Values["image"].(map[string]any)["repository"]}
	// The hub runs from the same image as the agent.
	want := []any{"v2", "application", agentinstall.ImageTag, agentinstall.ImageRepository}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("apiVersion, type, appVersion, image.repository (-want +got):\n%s", diff)
	}
}

func TestHubChartLint(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
	}{
		{"required values", parseValues(t, hubRequired)},
		{"load balancer", parseValues(t, hubRequired, `service: {type: LoadBalancer, loadBalancerSourceRanges: [203.0.113.0/24]}`)},
		{"ingress", parseValues(t, hubRequired, `{url: "", ingress: {enabled: true, host: hub.example.net, tls: {secretName: hub-cert}}}`)},
		{"files and extras", parseValues(t, hubRequired, `{oidcIssuers: [{url: "https://idp.example.com", audiences: [tether]}],
			locations: [{name: East, url: "https://east.example.com"}], extraArgs: [--access-token-ttl=30m],
			podDisruptionBudget: {enabled: false}, serviceAccount: {create: false, name: hub}, spread: {nodes: "", zones: ""}}`)},
		// Lint mode reports the missing required values without failing.
		{"values.yaml alone", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			linter := lint.RunAll(hubChartDir, tt.values, hubNS)
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
}

func TestHubChartObjects(t *testing.T) {
	ch := loadHubChart(t)
	tests := []struct {
		name    string
		release string
		values  map[string]any
		want    []string
	}{
		{
			name:    "required values",
			release: hubRelease,
			values:  parseValues(t, hubRequired),
			want: []string{
				"Deployment tether/tether-hub", "PodDisruptionBudget tether/tether-hub",
				"Service tether/tether-hub", "ServiceAccount tether/tether-hub",
			},
		},
		{
			name:    "ingress, files, no budget, an existing service account, another release",
			release: "eu",
			values: parseValues(t, hubRequired, `{ingress: {enabled: true, host: hub.example.net},
				locations: [{name: East, url: "https://east.example.com"}],
				podDisruptionBudget: {enabled: false}, serviceAccount: {create: false, name: hub}}`),
			want: []string{
				"ConfigMap tether/eu-tether-hub-config", "Deployment tether/eu-tether-hub",
				"Ingress tether/eu-tether-hub", "Service tether/eu-tether-hub",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slices.Sorted(maps.Keys(renderHub(t, ch, tt.release, tt.values)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHubArgs checks the hub's command line, and the grace period the
// kubelet gives it, which must cover the drain the flags ask for.
func TestHubArgs(t *testing.T) {
	ch := loadHubChart(t)
	type summary struct {
		Args  []string
		Grace *int64
	}
	tests := []struct {
		name   string
		values map[string]any
		want   summary
	}{
		{
			name:   "defaults",
			values: parseValues(t, hubRequired),
			want: summary{
				Args: []string{
					"hub", "--listen=:8443", "--data-dir=/etc/tether/hub",
					"--tls-cert=/etc/tether/tls/tls.crt", "--tls-key=/etc/tether/tls/tls.key",
					"--replica=$(POD_NAME)", "--peer-url=https://$(POD_IP):8443",
					"--url=https://tether.example.com", "--drain-delay=5s", "--drain-grace=30s", "--replica-lease=15s",
					"--metrics-bind-address=:9090",
				},
				Grace: ptrTo[int64](5 + 30 + 10),
			},
		},
		{
			name: "ingress, timings, files, extra flags",
			values: parseValues(t, hubRequired, `{url: "", ingress: {enabled: true, host: hub.example.net},
				drain: {delaySeconds: 20, graceSeconds: 120, marginSeconds: 15},
				replicaLease: 30s, heartbeatInterval: 10s, offlineAfter: 1m,
				oidcIssuers: [{url: "https://idp.example.com", audiences: [tether]}],
				locations: [{name: East, url: "https://east.example.com"}],
				extraArgs: [--access-token-ttl=30m]}`),
			want: summary{
				Args: []string{
					"hub", "--listen=:8443", "--data-dir=/etc/tether/hub",
					"--tls-cert=/etc/tether/tls/tls.crt", "--tls-key=/etc/tether/tls/tls.key",
					"--replica=$(POD_NAME)", "--peer-url=https://$(POD_IP):8443",
					"--url=https://hub.example.net", "--drain-delay=20s", "--drain-grace=120s", "--replica-lease=30s",
					"--heartbeat-interval=10s", "--offline-after=1m", "--metrics-bind-address=:9090",
					"--oidc-issuers=/etc/tether/config/oidc-issuers.json", "--locations=/etc/tether/config/locations.json",
					"--access-token-ttl=30m",
				},
				Grace: ptrTo[int64](20 + 120 + 15),
			},
		},
		{
			name:   "url wins over the ingress host",
			values: parseValues(t, hubRequired, `{url: "https://hub.example.net:8443", ingress: {enabled: true, host: hub.example.net}, replicaLease: ""}`),
			want: summary{
				Args: []string{
					"hub", "--listen=:8443", "--data-dir=/etc/tether/hub",
					"--tls-cert=/etc/tether/tls/tls.crt", "--tls-key=/etc/tether/tls/tls.key",
					"--replica=$(POD_NAME)", "--peer-url=https://$(POD_IP):8443",
					"--url=https://hub.example.net:8443", "--drain-delay=5s", "--drain-grace=30s",
					"--metrics-bind-address=:9090",
				},
				Grace: ptrTo[int64](45),
			},
		},
		{
			name:   "metrics off",
			values: parseValues(t, hubRequired, `{metrics: {enabled: false}}`),
			want: summary{
				Args: []string{
					"hub", "--listen=:8443", "--data-dir=/etc/tether/hub",
					"--tls-cert=/etc/tether/tls/tls.crt", "--tls-key=/etc/tether/tls/tls.key",
					"--replica=$(POD_NAME)", "--peer-url=https://$(POD_IP):8443",
					"--url=https://tether.example.com", "--drain-delay=5s", "--drain-grace=30s", "--replica-lease=15s",
				},
				Grace: ptrTo[int64](45),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c := hubDeployment(t, ch, hubRelease, tt.values)
			got := summary{Args: c.Args, Grace: d.Spec.Template.Spec.TerminationGracePeriodSeconds}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestHubContainer checks how the hub's command line meets the pod: the
// variables it refers to, its port, its files, its probes.
func TestHubContainer(t *testing.T) {
	ch := loadHubChart(t)
	d, c := hubDeployment(t, ch, hubRelease, parseValues(t, hubRequired,
		`{oidcIssuers: [{url: "https://idp.example.com", audiences: [tether]}], locations: [{name: East, url: "https://east.example.com"}]}`))
	pod := d.Spec.Template.Spec
	flags := flagValues(t, c.Args)

	t.Run("env", func(t *testing.T) {
		want := []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "TETHER_STORE", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "tether-hub-store"}, Key: "url",
			}}},
		}
		if diff := cmp.Diff(want, c.Env); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
		// The store comes from the environment only.
		if v, ok := flags["store"]; ok {
			t.Errorf("--store=%s given", v)
		}
	})

	t.Run("every $(VAR) in args is defined", func(t *testing.T) {
		// The kubelet leaves an undefined $(VAR) as it is.
		defined := map[string]bool{}
		for _, e := range c.Env {
			defined[e.Name] = true
		}
		var undefined []string
		for _, a := range c.Args {
			for _, m := range regexp.MustCompile(`\$\(([^)]*)\)`).FindAllStringSubmatch(a, -1) {
				if !defined[m[1]] {
					undefined = append(undefined, m[1])
				}
			}
		}
		if undefined != nil {
			t.Errorf("args refer to undefined variables %v", undefined)
		}
	})

	t.Run("port", func(t *testing.T) {
		want := []corev1.ContainerPort{
			{Name: "https", ContainerPort: 8443, Protocol: corev1.ProtocolTCP},
			{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP},
		}
		if diff := cmp.Diff(want, c.Ports); diff != "" {
			t.Errorf("ports (-want +got):\n%s", diff)
		}
		if got := flags["metrics-bind-address"]; got != ":9090" {
			t.Errorf("--metrics-bind-address = %q, want :9090 (the metrics container port)", got)
		}
		if got, want := []string{flags["listen"], flags["peer-url"]}, []string{":8443", "https://$(POD_IP):8443"}; !slices.Equal(got, want) {
			t.Errorf("--listen, --peer-url = %q, want %q (the container port)", got, want)
		}
	})

	t.Run("probes", func(t *testing.T) {
		probe := func(p *corev1.Probe) *corev1.HTTPGetAction {
			if p == nil {
				return nil
			}
			return p.HTTPGet
		}
		got := map[string]*corev1.HTTPGetAction{
			"startup": probe(c.StartupProbe), "liveness": probe(c.LivenessProbe), "readiness": probe(c.ReadinessProbe),
		}
		// Port "https" is the container port 8443 (checked above).
		https := intstr.FromString("https")
		want := map[string]*corev1.HTTPGetAction{
			"startup":   {Path: "/livez", Port: https, Scheme: corev1.URISchemeHTTPS},
			"liveness":  {Path: "/livez", Port: https, Scheme: corev1.URISchemeHTTPS},
			"readiness": {Path: "/readyz", Port: https, Scheme: corev1.URISchemeHTTPS},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("probes (-want +got):\n%s", diff)
		}
		timing := func(p *corev1.Probe) [3]int32 { return [3]int32{p.PeriodSeconds, p.TimeoutSeconds, p.FailureThreshold} }
		gotTiming := [][3]int32{timing(c.StartupProbe), timing(c.LivenessProbe), timing(c.ReadinessProbe)}
		wantTiming := [][3]int32{{2, 2, 60}, {10, 2, 3}, {2, 2, 2}}
		if diff := cmp.Diff(wantTiming, gotTiming); diff != "" {
			t.Errorf("startup, liveness, readiness period, timeout, failures (-want +got):\n%s", diff)
		}
	})

	t.Run("files", func(t *testing.T) {
		// Where each flag's file is: the volume mounted at its directory,
		// and the key it comes from.
		mounts := map[string]corev1.VolumeMount{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = m
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
		}
		type source struct {
			Secret, ConfigMap string
			Keys              []string
			Mode              *int32
			ReadOnly          bool
		}
		where := func(dir string) source {
			m, ok := mounts[dir]
			if !ok {
				return source{}
			}
			v := volumes[m.Name]
			s := source{ReadOnly: m.ReadOnly}
			var items []corev1.KeyToPath
			switch {
			case v.Secret != nil:
				s.Secret, s.Mode, items = v.Secret.SecretName, v.Secret.DefaultMode, v.Secret.Items
			case v.ConfigMap != nil:
				s.ConfigMap, items = v.ConfigMap.Name, v.ConfigMap.Items
			}
			for _, it := range items {
				if it.Key != it.Path {
					t.Errorf("volume %s: key %s at %s", v.Name, it.Key, it.Path)
				}
				s.Keys = append(s.Keys, it.Key)
			}
			return s
		}
		got := map[string]source{
			"--data-dir":     where(flags["data-dir"]),
			"--tls-cert":     where(path.Dir(flags["tls-cert"])),
			"--tls-key":      where(path.Dir(flags["tls-key"])),
			"--oidc-issuers": where(path.Dir(flags["oidc-issuers"])),
			"--locations":    where(path.Dir(flags["locations"])),
		}
		identity := source{Secret: "tether-hub-identity", Keys: []string{"admin.token", "hub.id", "assertion.key", "issuer.key"}, Mode: ptrTo[int32](0o440), ReadOnly: true}
		tls := source{Secret: "tether-hub-tls", Keys: []string{"tls.crt", "tls.key"}, Mode: ptrTo[int32](0o440), ReadOnly: true}
		config := source{ConfigMap: "tether-hub-config", ReadOnly: true}
		want := map[string]source{
			"--data-dir": identity, "--tls-cert": tls, "--tls-key": tls, "--oidc-issuers": config, "--locations": config,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		gotNames := []string{path.Base(flags["tls-cert"]), path.Base(flags["tls-key"]), path.Base(flags["oidc-issuers"]), path.Base(flags["locations"])}
		if diff := cmp.Diff([]string{"tls.crt", "tls.key", "oidc-issuers.json", "locations.json"}, gotNames); diff != "" {
			t.Errorf("file names (-want +got):\n%s", diff)
		}
	})
}

func TestHubPodSecurity(t *testing.T) {
	ch := loadHubChart(t)
	objs := renderHub(t, ch, hubRelease, parseValues(t, hubRequired))
	d := typed[appsv1.Deployment](t, objs, "Deployment tether/tether-hub")
	pod := d.Spec.Template.Spec
	type summary struct {
		Pod                  *corev1.PodSecurityContext
		Container            *corev1.SecurityContext
		AutomountPod, AutoSA *bool
		ServiceAccount       string
		WritableNotEmptyDir  []string
	}
	got := summary{
		Pod: pod.SecurityContext, Container: pod.Containers[0].SecurityContext,
		AutomountPod:   pod.AutomountServiceAccountToken,
		AutoSA:         typed[corev1.ServiceAccount](t, objs, "ServiceAccount tether/tether-hub").AutomountServiceAccountToken,
		ServiceAccount: pod.ServiceAccountName,
	}
	// With a read-only root, only emptyDirs may be written.
	emptyDirs := map[string]bool{}
	for _, v := range pod.Volumes {
		emptyDirs[v.Name] = v.EmptyDir != nil
	}
	for _, m := range pod.Containers[0].VolumeMounts {
		if !m.ReadOnly && !emptyDirs[m.Name] {
			got.WritableNotEmptyDir = append(got.WritableNotEmptyDir, m.MountPath)
		}
	}
	want := summary{
		Pod: &corev1.PodSecurityContext{
			RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo[int64](65532), RunAsGroup: ptrTo[int64](65532), FSGroup: ptrTo[int64](65532),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		Container: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		AutomountPod: ptrTo(false), AutoSA: ptrTo(false),
		ServiceAccount: "tether-hub",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestHubAvailability checks what keeps the hub up while its pods are
// replaced: the rollout, the spread and the disruption budget.
func TestHubAvailability(t *testing.T) {
	ch := loadHubChart(t)
	d, _ := hubDeployment(t, ch, hubRelease, parseValues(t, hubRequired))

	t.Run("rollout", func(t *testing.T) {
		type summary struct {
			Replicas *int32
			Strategy appsv1.DeploymentStrategy
		}
		want := summary{ptrTo[int32](3), appsv1.DeploymentStrategy{
			Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromInt32(1)),
			},
		}}
		if diff := cmp.Diff(want, summary{d.Spec.Replicas, d.Spec.Strategy}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("spread", func(t *testing.T) {
		want := []corev1.TopologySpreadConstraint{
			{
				MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
				NodeTaintsPolicy: ptrTo(corev1.NodeInclusionPolicyHonor),
				LabelSelector:    d.Spec.Selector, MatchLabelKeys: []string{"pod-template-hash"},
			},
			{
				MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
				NodeTaintsPolicy: ptrTo(corev1.NodeInclusionPolicyHonor),
				LabelSelector:    d.Spec.Selector, MatchLabelKeys: []string{"pod-template-hash"},
			},
		}
		if diff := cmp.Diff(want, d.Spec.Template.Spec.TopologySpreadConstraints); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// selects reports whether sel selects the pods of d.
func selects(t *testing.T, sel *metav1.LabelSelector, d *appsv1.Deployment) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(d.Spec.Template.Labels))
}

// TestHubSelectors checks that the PodDisruptionBudget and the Service
// select the release's hub pods and no other release's.
func TestHubSelectors(t *testing.T) {
	ch := loadHubChart(t)
	objs := renderHub(t, ch, hubRelease, parseValues(t, hubRequired))
	d := typed[appsv1.Deployment](t, objs, "Deployment tether/tether-hub")
	pdb := typed[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget tether/tether-hub")
	svc := typed[corev1.Service](t, objs, "Service tether/tether-hub")
	other, _ := hubDeployment(t, ch, "other", parseValues(t, hubRequired))

	type summary struct {
		SameSelector, OwnPods, OtherPods []bool
		MaxUnavailable                   *intstr.IntOrString
		UnhealthyPodEvictionPolicy       *policyv1.UnhealthyPodEvictionPolicyType
	}
	got := summary{
		SameSelector:               []bool{cmp.Equal(d.Spec.Selector, pdb.Spec.Selector), cmp.Equal(d.Spec.Selector.MatchLabels, svc.Spec.Selector)},
		OwnPods:                    []bool{selects(t, d.Spec.Selector, d), selects(t, pdb.Spec.Selector, d), selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, d)},
		OtherPods:                  []bool{selects(t, pdb.Spec.Selector, other), selects(t, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, other)},
		MaxUnavailable:             pdb.Spec.MaxUnavailable,
		UnhealthyPodEvictionPolicy: pdb.Spec.UnhealthyPodEvictionPolicy,
	}
	want := summary{
		SameSelector:               []bool{true, true},
		OwnPods:                    []bool{true, true, true},
		OtherPods:                  []bool{false, false},
		MaxUnavailable:             ptrTo(intstr.FromInt32(1)),
		UnhealthyPodEvictionPolicy: ptrTo(policyv1.AlwaysAllow),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestHubService(t *testing.T) {
	ch := loadHubChart(t)
	type summary struct {
		Type         corev1.ServiceType
		Ports        []corev1.ServicePort
		SourceRanges []string
		Annotations  map[string]string
		// TargetPorts are the container ports the Service's ports reach.
		TargetPorts []int32
	}
	https := []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https"), Protocol: corev1.ProtocolTCP, AppProtocol: ptrTo("https")}}
	tests := []struct {
		name   string
		values map[string]any
		want   summary
	}{
		{"defaults", parseValues(t, hubRequired), summary{Type: corev1.ServiceTypeClusterIP, Ports: https, TargetPorts: []int32{8443}}},
		{
			name: "load balancer",
			values: parseValues(t, hubRequired, `service: {type: LoadBalancer, loadBalancerSourceRanges: [203.0.113.0/24],
				annotations: {service.beta.kubernetes.io/azure-dns-label-name: tether}}`),
			want: summary{
				Type: corev1.ServiceTypeLoadBalancer, Ports: https, TargetPorts: []int32{8443},
				SourceRanges: []string{"203.0.113.0/24"},
				Annotations:  map[string]string{"service.beta.kubernetes.io/azure-dns-label-name": "tether"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := renderHub(t, ch, hubRelease, tt.values)
			svc := typed[corev1.Service](t, objs, "Service tether/tether-hub")
			c := typed[appsv1.Deployment](t, objs, "Deployment tether/tether-hub").Spec.Template.Spec.Containers[0]
			got := summary{Type: svc.Spec.Type, Ports: svc.Spec.Ports, SourceRanges: svc.Spec.LoadBalancerSourceRanges, Annotations: svc.Annotations}
			for _, p := range svc.Spec.Ports {
				for _, cp := range c.Ports {
					if cp.Name == p.TargetPort.String() || cp.ContainerPort == p.TargetPort.IntVal {
						got.TargetPorts = append(got.TargetPorts, cp.ContainerPort)
					}
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestHubIngress(t *testing.T) {
	ch := loadHubChart(t)
	nginx := map[string]string{
		"nginx.ingress.kubernetes.io/backend-protocol":        "HTTPS",
		"nginx.ingress.kubernetes.io/proxy-read-timeout":      "3600",
		"nginx.ingress.kubernetes.io/proxy-send-timeout":      "3600",
		"nginx.ingress.kubernetes.io/proxy-buffering":         "off",
		"nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
		"nginx.ingress.kubernetes.io/proxy-body-size":         "0",
	}
	withCertManager := maps.Clone(nginx)
	withCertManager["cert-manager.io/cluster-issuer"] = "letsencrypt"
	delete(withCertManager, "nginx.ingress.kubernetes.io/proxy-body-size")
	rules := func(host string) []networkingv1.IngressRule {
		return []networkingv1.IngressRule{{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptrTo(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "tether-hub", Port: networkingv1.ServiceBackendPort{Name: "https"}},
			}}},
		}}}}
	}
	type summary struct {
		URL         string
		Spec        networkingv1.IngressSpec
		Annotations map[string]string
		// ServicePorts are the names of the Service's ports.
		ServicePorts []string
	}
	tests := []struct {
		name   string
		values map[string]any
		want   summary
	}{
		{
			name:   "certificate from a Secret",
			values: parseValues(t, hubRequired, `{url: "", ingress: {enabled: true, host: hub.example.net, tls: {secretName: hub-example-net}}}`),
			want: summary{
				URL: "https://hub.example.net",
				Spec: networkingv1.IngressSpec{
					IngressClassName: ptrTo("nginx"),
					TLS:              []networkingv1.IngressTLS{{Hosts: []string{"hub.example.net"}, SecretName: "hub-example-net"}},
					Rules:            rules("hub.example.net"),
				},
				Annotations:  nginx,
				ServicePorts: []string{"https"},
			},
		},
		{
			name: "the controller's default certificate, another class, more annotations and one fewer",
			values: parseValues(t, hubRequired, `{url: "", ingress: {enabled: true, host: tether.example.org, className: internal,
				annotations: {cert-manager.io/cluster-issuer: letsencrypt, nginx.ingress.kubernetes.io/proxy-body-size: null}}}`),
			want: summary{
				URL: "https://tether.example.org",
				Spec: networkingv1.IngressSpec{
					IngressClassName: ptrTo("internal"),
					TLS:              []networkingv1.IngressTLS{{Hosts: []string{"tether.example.org"}}},
					Rules:            rules("tether.example.org"),
				},
				Annotations:  withCertManager,
				ServicePorts: []string{"https"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := renderHub(t, ch, hubRelease, tt.values)
			ing := typed[networkingv1.Ingress](t, objs, "Ingress tether/tether-hub")
			c := typed[appsv1.Deployment](t, objs, "Deployment tether/tether-hub").Spec.Template.Spec.Containers[0]
			got := summary{URL: flagValues(t, c.Args)["url"], Spec: ing.Spec, Annotations: ing.Annotations}
			for _, p := range typed[corev1.Service](t, objs, "Service tether/tether-hub").Spec.Ports {
				got.ServicePorts = append(got.ServicePorts, p.Name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestHubConfigFiles checks the ConfigMap of the --oidc-issuers and
// --locations files, and that a change to it, and only to it, rolls the
// pods.
func TestHubConfigFiles(t *testing.T) {
	ch := loadHubChart(t)
	const issuers = `oidcIssuers: [{url: "https://login.example.com/t/v2.0", audiences: ["api://tether"], cliClientID: c1}]`
	type summary struct {
		Data     map[string]any
		Checksum string
	}
	get := func(t *testing.T, values map[string]any) summary {
		objs := renderHub(t, ch, hubRelease, values)
		s := summary{Checksum: typed[appsv1.Deployment](t, objs, "Deployment tether/tether-hub").Spec.Template.Annotations["tether.dev/config-sha256"]}
		if _, ok := objs["ConfigMap tether/tether-hub-config"]; !ok {
			return s
		}
		s.Data = map[string]any{}
		for k, v := range typed[corev1.ConfigMap](t, objs, "ConfigMap tether/tether-hub-config").Data {
			var j any
			if err := json.Unmarshal([]byte(v), &j); err != nil {
				t.Fatalf("%s: %v\n%s", k, err, v)
			}
			s.Data[k] = j
		}
		return s
	}
	none := get(t, parseValues(t, hubRequired))
	east := get(t, parseValues(t, hubRequired, issuers, `locations: [{name: East US 2, url: "https://eastus2.example.com", endpoints: ["eastus2.example.com:443"]}]`))
	eastMore := get(t, parseValues(t, hubRequired, issuers, `{locations: [{name: East US 2, url: "https://eastus2.example.com", endpoints: ["eastus2.example.com:443"]}], replicas: 5}`))
	west := get(t, parseValues(t, hubRequired, issuers, `locations: [{name: West, url: "https://west.example.com"}]`))

	wantEast := map[string]any{
		"oidc-issuers.json": []any{map[string]any{"url": "https://login.example.com/t/v2.0", "audiences": []any{"api://tether"}, "cliClientID": "c1"}},
		"locations.json":    []any{map[string]any{"name": "East US 2", "url": "https://eastus2.example.com", "endpoints": []any{"eastus2.example.com:443"}}},
	}
	got := []any{none, east.Data, east.Checksum != "", east.Checksum == eastMore.Checksum, east.Checksum != west.Checksum}
	want := []any{summary{}, wantEast, true, true, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("no files; the files; a checksum; unchanged by other values; changed by the files (-want +got):\n%s", diff)
	}
}

func TestHubChartRefuses(t *testing.T) {
	ch := loadHubChart(t)
	const password = "s3cret-pw"
	dsn := "postgres://tether:" + password + "@db.example.com:5432/tether"
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"no store", parseValues(t, hubRequired, `store: {existingSecret: ""}`), "store.existingSecret is required"},
		{"no store key", parseValues(t, hubRequired, `store: {secretKey: ""}`), "store.secretKey is required"},
		{"no identity", parseValues(t, hubRequired, `identity: {existingSecret: ""}`), "identity.existingSecret is required"},
		{"no tls", parseValues(t, hubRequired, `tls: {existingSecret: ""}`), "tls.existingSecret is required"},
		{"no url", parseValues(t, hubRequired, `url: ""`), "url is required"},
		{"ingress without a host", parseValues(t, hubRequired, `{url: "", ingress: {enabled: true}}`), "ingress.host is required"},
		{"http url", parseValues(t, hubRequired, `url: "http://tether.example.com"`), `url "http://tether.example.com" must be https://HOST[:PORT]`},
		{"url with a path", parseValues(t, hubRequired, `url: "https://tether.example.com/hub"`), "must be https://HOST[:PORT]"},
		{"a flag the chart sets", parseValues(t, hubRequired, `extraArgs: ["--url=https://other"]`), "extraArgs: --url: the chart sets it itself"},
		// The schema.
		{"replicas not a number", parseValues(t, hubRequired, `replicas: three`), "at '/replicas': got string, want integer"},
		{"no replicas", parseValues(t, hubRequired, `replicas: 0`), "at '/replicas': minimum: got 0, want 1"},
		{"drain as a duration", parseValues(t, hubRequired, `drain: {delaySeconds: 5s}`), "at '/drain/delaySeconds': got string, want integer"},
		{"a misspelt value", parseValues(t, hubRequired, `replica: 3`), "additional properties 'replica' not allowed"},
		{"unknown service type", parseValues(t, hubRequired, `service: {type: ExternalName}`), "at '/service/type': value must be one of 'ClusterIP', 'LoadBalancer'"},
		{"duration without a unit", parseValues(t, hubRequired, `replicaLease: "15"`), "at '/replicaLease': '15' does not match pattern"},
		// The PostgreSQL URL has no way in but the Secret.
		{"store URL as a value", parseValues(t, hubRequired, `store: {url: "`+dsn+`"}`), "at '/store': additional properties 'url' not allowed"},
		{"store URL as a flag", parseValues(t, hubRequired, `extraArgs: ["--store=`+dsn+`"]`), "extraArgs: --store: the PostgreSQL URL holds a password"},
		{"store URL as an env value", parseValues(t, hubRequired, `env: [{name: TETHER_STORE, value: "`+dsn+`"}]`), "additional properties 'env' not allowed"},
		{"store URL as the Secret's name", parseValues(t, hubRequired, `store: {existingSecret: "`+dsn+`"}`), "store.existingSecret must be the name of a Secret"},
		{"a bad Secret name", parseValues(t, hubRequired, `tls: {existingSecret: Hub_TLS}`), "tls.existingSecret must be the name of a Secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := render(ch, hubRelease, hubNS, tt.values)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render: got error %v, want one containing %q", err, tt.want)
			}
			// Helm prints the error: never a password.
			if strings.Contains(fmt.Sprint(err), password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestHubNoStoreURL checks that the store's URL is read from the Secret
// only, whatever is enabled: no rendered manifest holds a PostgreSQL URL,
// and TETHER_STORE has no literal value.
func TestHubNoStoreURL(t *testing.T) {
	ch := loadHubChart(t)
	files, err := render(ch, hubRelease, hubNS, parseValues(t, hubRequired, `{ingress: {enabled: true, host: hub.example.net},
		locations: [{name: East, url: "https://east.example.com"}], extraArgs: [--access-token-ttl=30m]}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if regexp.MustCompile(`(?i)postgres(ql)?://`).MatchString(text) {
			t.Errorf("%s holds a PostgreSQL URL:\n%s", name, text)
		}
	}
	c := typed[appsv1.Deployment](t, decodeManifests(t, files), "Deployment tether/tether-hub").Spec.Template.Spec.Containers[0]
	var literal []string
	for _, e := range c.Env {
		if e.Name == "TETHER_STORE" && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
			literal = append(literal, fmt.Sprintf("%+v", e))
		}
	}
	if literal != nil || len(c.EnvFrom) > 0 {
		t.Errorf("TETHER_STORE not only from a Secret key: %v, envFrom %v", literal, c.EnvFrom)
	}
}

// TestHubNotes renders NOTES.txt, which Helm prints after an install.
func TestHubNotes(t *testing.T) {
	ch := loadHubChart(t)
	tests := []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{
			name:   "cluster IP",
			values: parseValues(t, hubRequired),
			want: []string{
				"its URL is https://tether.example.com",
				"kubectl --namespace tether rollout status deploy/tether-hub",
				`kubectl --namespace tether get secret tether-hub-identity -o jsonpath='{.data.admin\.token}' | base64 -d > admin.token`,
				"export TETHER_HUB=https://tether.example.com TETHER_ADMIN_TOKEN_FILE=$PWD/admin.token",
				`kubectl --namespace tether get secret tether-hub-tls -o jsonpath='{.data.tls\.crt}' | base64 -d > hub-ca.crt`,
				"route\n   https://tether.example.com to its port 443 yourself",
				"tether cluster connect -g GROUP -n NAME --kubeconfig CLUSTER.kubeconfig",
			},
		},
		{
			name:   "load balancer",
			values: parseValues(t, hubRequired, `service: {type: LoadBalancer}`),
			want: []string{
				"Point the DNS name of https://tether.example.com at the load balancer's address",
				"kubectl --namespace tether get service tether-hub",
				"export TETHER_HUB_CA=$PWD/hub-ca.crt",
				"tether cluster connect -g GROUP -n NAME",
			},
		},
		{
			name:   "ingress",
			values: parseValues(t, hubRequired, `{url: "", ingress: {enabled: true, host: hub.example.net, tls: {secretName: hub-cert}}}`),
			want: []string{
				"its URL is https://hub.example.net",
				"through the ingress at hub.example.net, which serves\n   the certificate in the Secret hub-cert",
				"export TETHER_HUB=https://hub.example.net TETHER_ADMIN_TOKEN_FILE=$PWD/admin.token",
				"tether cluster connect -g GROUP -n NAME",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, err := util.ToRenderValues(ch, tt.values, common.ReleaseOptions{Name: hubRelease, Namespace: hubNS, IsInstall: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			rendered, err := engine.Engine{Strict: true}.Render(ch, vals)
			if err != nil {
				t.Fatal(err)
			}
			notes := rendered[ch.Name()+"/templates/NOTES.txt"]
			for _, want := range tt.want {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
				}
			}
		})
	}
}

// TestHubMetrics checks the metrics port and the scrape annotations.
func TestHubMetrics(t *testing.T) {
	ch := loadHubChart(t)
	type summary struct {
		Flag        string
		Ports       []corev1.ContainerPort
		Annotations map[string]string
	}
	https := corev1.ContainerPort{Name: "https", ContainerPort: 8443, Protocol: corev1.ProtocolTCP}
	tests := []struct {
		name   string
		values string
		want   summary
	}{
		{name: "defaults", values: `{}`, want: summary{Flag: ":9090",
			Ports:       []corev1.ContainerPort{https, {Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics"}}},
		{name: "another port, no annotations, pod annotations kept", values: `{metrics: {port: 9102, scrapeAnnotations: false}, podAnnotations: {a: b}}`,
			want: summary{Flag: ":9102",
				Ports:       []corev1.ContainerPort{https, {Name: "metrics", ContainerPort: 9102, Protocol: corev1.ProtocolTCP}},
				Annotations: map[string]string{"a": "b"}}},
		{name: "off", values: `{metrics: {enabled: false}}`, want: summary{Ports: []corev1.ContainerPort{https}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, c := hubDeployment(t, ch, hubRelease, parseValues(t, hubRequired, tt.values))
			got := summary{Flag: flagValues(t, c.Args)["metrics-bind-address"], Ports: c.Ports, Annotations: d.Spec.Template.Annotations}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// The schema refuses the HTTPS port, and a port that is not one.
	for _, bad := range []string{`{metrics: {port: 8443}}`, `{metrics: {port: 0}}`, `{metrics: {port: "9090"}}`} {
		if _, err := render(ch, hubRelease, hubNS, parseValues(t, hubRequired, bad)); err == nil {
			t.Errorf("values %s rendered; want the schema to refuse them", bad)
		}
	}
}
