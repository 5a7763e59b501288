package procpods

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// envFixture returns a source with configmap "cm" and secret "sec" in
// namespace "ns", and a pod "p" there.
func envFixture(t *testing.T) (envSource, *corev1.Pod) {
	t.Helper()
	indexer := func(objs ...any) cache.Indexer {
		idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
		for _, o := range objs {
			if err := idx.Add(o); err != nil {
				t.Fatal(err)
			}
		}
		return idx
	}
	src := envSource{
		nodeIP: netip.MustParseAddr("10.99.0.1"),
		configMaps: corev1listers.NewConfigMapLister(indexer(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns"},
			Data:       map[string]string{"color": "blue", "size": "L"},
		})),
		secrets: corev1listers.NewSecretLister(indexer(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "sec", Namespace: "ns"},
			Data:       map[string][]byte{"token": []byte("s3cret")},
		})),
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "n1", ServiceAccountName: "sa"},
	}
	return src, pod
}

func field(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func cmKey(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
}

func secretKey(name, key string, optional bool) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key, Optional: &optional}}
}

func TestContainerEnv(t *testing.T) {
	src, pod := envFixture(t)
	base := []string{"HOME=/d", "HOSTNAME=p", "PATH=" + defaultPath}
	tests := []struct {
		name string
		c    corev1.Container
		want []string // added to base
	}{
		{name: "plain and expanded values", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "A", Value: "x"}, {Name: "B", Value: "$(A)-$(MISSING)-$$(A)"},
		}}, want: []string{"A=x", "B=x-$(MISSING)-$(A)"}},
		{name: "downward API", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "NAME", ValueFrom: field("metadata.name")},
			{Name: "NS", ValueFrom: field("metadata.namespace")},
			{Name: "UID", ValueFrom: field("metadata.uid")},
			{Name: "IP", ValueFrom: field("status.podIP")},
			{Name: "HOST", ValueFrom: field("status.hostIP")},
			{Name: "NODE", ValueFrom: field("spec.nodeName")},
			{Name: "SA", ValueFrom: field("spec.serviceAccountName")},
			{Name: "APP", ValueFrom: field("metadata.labels['app']")},
		}}, want: []string{"APP=web", "HOST=10.99.0.1", "IP=10.99.0.1", "NAME=p", "NODE=n1", "NS=ns", "SA=sa", "UID=u-1"}},
		{name: "configmap and secret keys", c: corev1.Container{Env: []corev1.EnvVar{
			{Name: "COLOR", ValueFrom: cmKey("cm", "color", false)},
			{Name: "TOKEN", ValueFrom: secretKey("sec", "token", false)},
			{Name: "GONE", ValueFrom: secretKey("nope", "k", true)},
			{Name: "NOKEY", ValueFrom: cmKey("cm", "weight", true)},
		}}, want: []string{"COLOR=blue", "TOKEN=s3cret"}},
		{name: "envFrom with prefix, env wins", c: corev1.Container{
			EnvFrom: []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}}}},
			Env:     []corev1.EnvVar{{Name: "CM_size", Value: "XL"}},
		}, want: []string{"CM_color=blue", "CM_size=XL"}},
		{name: "env overrides HOME", c: corev1.Container{Env: []corev1.EnvVar{{Name: "HOME", Value: "/elsewhere"}}},
			want: []string{"HOME=/elsewhere"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := src.containerEnv(pod, &tc.c, "/d")
			if err != nil {
				t.Fatalf("containerEnv: %v", err)
			}
			want := map[string]string{}
			for _, kv := range append(append([]string(nil), base...), tc.want...) {
				k, v, _ := strings.Cut(kv, "=")
				want[k] = v
			}
			gotMap := map[string]string{}
			for _, kv := range got {
				k, v, _ := strings.Cut(kv, "=")
				gotMap[k] = v
			}
			if diff := cmp.Diff(want, gotMap); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerEnvErrors(t *testing.T) {
	src, pod := envFixture(t)
	tests := []struct {
		name string
		c    corev1.Container
	}{
		{name: "missing configmap", c: corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: cmKey("nope", "k", false)}}}},
		{name: "missing key", c: corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: cmKey("cm", "weight", false)}}}},
		{name: "missing secret", c: corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: secretKey("nope", "k", false)}}}},
		{name: "missing envFrom secret", c: corev1.Container{EnvFrom: []corev1.EnvFromSource{
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}}}}},
		{name: "unsupported field", c: corev1.Container{Env: []corev1.EnvVar{{Name: "X", ValueFrom: field("spec.hostname")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if env, err := src.containerEnv(pod, &tc.c, "/d"); err == nil {
				t.Errorf("containerEnv = %q, want an error", env)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "1", "B": "two"}
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"plain", "plain"},
		{"$(A)", "1"},
		{"x$(A)y$(B)z", "x1ytwoz"},
		{"$(C)", "$(C)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"$", "$"},
		{"$A", "$A"},
		{"$(A", "$(A"},
		{"$()", "$()"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, expand(tc.in, env)); diff != "" {
				t.Errorf("expand(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$(A)", "$$", "x$(", "$(A)$(B", "$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Without definitions, expansion only unescapes "$$".
		got := expand(s, nil)
		if len(got) > len(s) {
			t.Errorf("expand(%q) = %q grew without definitions", s, got)
		}
	})
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/nonexistent:" + dir}
	tests := []struct {
		name    string
		cmd     string
		want    string
		wantErr bool
	}{
		{name: "absolute", cmd: "/bin/sh", want: "/bin/sh"},
		{name: "from PATH", cmd: "tool", want: filepath.Join(dir, "tool")},
		{name: "relative to the working directory", cmd: "./tool", want: filepath.Join(dir, "tool")},
		{name: "not executable", cmd: "./data", wantErr: true},
		{name: "not found", cmd: "no-such-tool", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := lookPath(tc.cmd, env, dir)
			if (err != nil) != tc.wantErr {
				t.Fatalf("lookPath error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
