package agentinstall

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"tether.dev/tether/internal/access"
)

// Apply applies objs in order with server-side apply as FieldManager,
// forcing conflicts (fields another manager set are taken over), so
// re-applying is safe and repairs drift. Each object's kind comes from the
// API server's discovery. progress, if not nil, is told of each object
// applied. It stops at the first error.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, progress func(string)) error {
	if progress == nil {
		progress = func(string) {}
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apply the agent: %w", err)
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apply the agent: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		what := obj.GetKind() + " " + obj.GetName()
		if ns := obj.GetNamespace(); ns != "" {
			what = obj.GetKind() + " " + ns + "/" + obj.GetName()
		}
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		var r dynamic.ResourceInterface = client.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			r = client.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		if _, err := r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		progress("applied " + what)
	}
	return nil
}

// Remove deletes what Objects made for an agent in namespace, and the
// agent's own state Secret and hub-RBAC role bindings: first the
// Deployment (the agent stops), then its ClusterRoleBinding and ClusterRole
// (so a still-running agent cannot recreate bindings), then the hub-RBAC
// bindings (access.BindingSelector, in every namespace), then the
// namespaced objects, and last the namespace itself if it carries our
// labels (a namespace made by someone else is left). Objects are found by
// Selector, so a Helm release of the chart (managed-by Helm) is not
// touched. What is already gone is fine: Remove can be run again. It
// returns once every deletion is accepted; the namespace may still be
// terminating then.
func Remove(ctx context.Context, cfg *rest.Config, namespace string) error {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("remove the agent: %w", err)
	}
	background := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &background}
	ours := metav1.ListOptions{LabelSelector: Selector}
	bindings := metav1.ListOptions{LabelSelector: access.BindingSelector}

	steps := []struct {
		what string
		do   func() error
	}{
		{"the agent's Deployment", func() error {
			return client.AppsV1().Deployments(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"the agent's ClusterRoleBinding", func() error {
			return client.RbacV1().ClusterRoleBindings().DeleteCollection(ctx, del, ours)
		}},
		{"the agent's ClusterRole", func() error {
			return client.RbacV1().ClusterRoles().DeleteCollection(ctx, del, ours)
		}},
		{"the hub-RBAC ClusterRoleBindings", func() error {
			return client.RbacV1().ClusterRoleBindings().DeleteCollection(ctx, del, bindings)
		}},
		{"the hub-RBAC RoleBindings", func() error {
			// No DeleteCollection across namespaces: list, then delete each.
			list, err := client.RbacV1().RoleBindings("").List(ctx, bindings)
			if err != nil {
				return err
			}
			for _, rb := range list.Items {
				if err := client.RbacV1().RoleBindings(rb.Namespace).Delete(ctx, rb.Name, del); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			return nil
		}},
		{"the agent's RoleBinding", func() error {
			return client.RbacV1().RoleBindings(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"the agent's Role", func() error {
			return client.RbacV1().Roles(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"the agent's Secrets", func() error {
			return client.CoreV1().Secrets(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"the agent's state Secret", func() error {
			return client.CoreV1().Secrets(namespace).Delete(ctx, StateSecretName, del)
		}},
		{"the agent's ConfigMap", func() error {
			return client.CoreV1().ConfigMaps(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"the agent's ServiceAccount", func() error {
			return client.CoreV1().ServiceAccounts(namespace).DeleteCollection(ctx, del, ours)
		}},
		{"namespace " + namespace, func() error {
			ns, err := client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ns.Labels[NameLabel] != Name || ns.Labels[ManagedByLabel] != ManagedBy {
				return nil
			}
			return client.CoreV1().Namespaces().Delete(ctx, namespace, del)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove %s: %w", s.what, err)
		}
	}
	return nil
}
