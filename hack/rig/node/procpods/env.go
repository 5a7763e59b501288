package procpods

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// defaultPath is the PATH of containers that set none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// envSource resolves what a container's environment refers to.
type envSource struct {
	nodeIP     netip.Addr
	configMaps corev1listers.ConfigMapLister // nil: references fail unless optional
	secrets    corev1listers.SecretLister    // nil: references fail unless optional
}

// containerEnv is the environment of a container's processes: PATH, HOME
// (the container directory), HOSTNAME (the pod name) and TERM for a TTY,
// then envFrom and env as the kubelet resolves them: $(VAR) references,
// fieldRef (metadata, spec.nodeName, spec.serviceAccountName, pod and host
// IPs), configMapKeyRef and secretKeyRef. resourceFieldRef and service
// links are not supported (services are not reachable from the host).
func (s envSource) containerEnv(pod *corev1.Pod, c *corev1.Container, dir string) ([]string, error) {
	env := map[string]string{
		"PATH":     defaultPath,
		"HOME":     dir,
		"HOSTNAME": pod.Name,
	}
	if c.TTY {
		env["TERM"] = "xterm"
	}
	for _, from := range c.EnvFrom {
		data, err := s.envFromData(pod.Namespace, from)
		if err != nil {
			return nil, err
		}
		for k, v := range data {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = expand(e.Value, env)
			continue
		}
		v, ok, err := s.valueFrom(pod, e.ValueFrom)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			env[e.Name] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out, nil
}

func (s envSource) envFromData(namespace string, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		ref := from.ConfigMapRef
		if s.configMaps != nil {
			if cm, err := s.configMaps.ConfigMaps(namespace).Get(ref.Name); err == nil {
				return cm.Data, nil
			}
		}
		if ref.Optional != nil && *ref.Optional {
			return nil, nil
		}
		return nil, fmt.Errorf("configmap %q not found", ref.Name)
	case from.SecretRef != nil:
		ref := from.SecretRef
		if s.secrets != nil {
			if sec, err := s.secrets.Secrets(namespace).Get(ref.Name); err == nil {
				data := make(map[string]string, len(sec.Data))
				for k, v := range sec.Data {
					data[k] = string(v)
				}
				return data, nil
			}
		}
		if ref.Optional != nil && *ref.Optional {
			return nil, nil
		}
		return nil, fmt.Errorf("secret %q not found", ref.Name)
	}
	return nil, nil
}

// valueFrom resolves one env valueFrom; ok is false for an optional
// reference that does not resolve.
func (s envSource) valueFrom(pod *corev1.Pod, from *corev1.EnvVarSource) (value string, ok bool, err error) {
	switch {
	case from.FieldRef != nil:
		v, err := s.fieldValue(pod, from.FieldRef.FieldPath)
		return v, err == nil, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		if s.configMaps != nil {
			if cm, err := s.configMaps.ConfigMaps(pod.Namespace).Get(ref.Name); err == nil {
				if v, found := cm.Data[ref.Key]; found {
					return v, true, nil
				}
				if optional {
					return "", false, nil
				}
				return "", false, fmt.Errorf("key %q not in configmap %q", ref.Key, ref.Name)
			}
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("configmap %q not found", ref.Name)
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		if s.secrets != nil {
			if sec, err := s.secrets.Secrets(pod.Namespace).Get(ref.Name); err == nil {
				if v, found := sec.Data[ref.Key]; found {
					return string(v), true, nil
				}
				if optional {
					return "", false, nil
				}
				return "", false, fmt.Errorf("key %q not in secret %q", ref.Key, ref.Name)
			}
		}
		if optional {
			return "", false, nil
		}
		return "", false, fmt.Errorf("secret %q not found", ref.Name)
	default:
		return "", false, nil // resourceFieldRef, fileKeyRef: not supported
	}
}

// fieldValue resolves a downward API field path.
func (s envSource) fieldValue(pod *corev1.Pod, path string) (string, error) {
	mapKey := func(prefix string) (string, bool) {
		rest, ok := strings.CutPrefix(path, prefix+"['")
		if !ok {
			return "", false
		}
		return strings.CutSuffix(rest, "']")
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
		return s.nodeIP.String(), nil
	}
	if k, ok := mapKey("metadata.labels"); ok {
		return pod.Labels[k], nil
	}
	if k, ok := mapKey("metadata.annotations"); ok {
		return pod.Annotations[k], nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// expand replaces $(NAME) with the value of NAME in env, as Kubernetes does:
// "$$" is an escaped "$", and references to undefined names stay as they are.
func expand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
