package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"tether.dev/tether/internal/access"
)

// BindingReconcilerConfig configures a BindingReconciler.
type BindingReconcilerConfig struct {
	// APIServer is how the agent reaches the API server, with the agent's
	// own credentials (see deploy/agent-rbac.yaml for what they need).
	// Required. A zero QPS means 20 requests per second, bursts of 50,
	// rather than client-go's 5: a cluster with many namespaces needs three
	// bindings in each when it enters hub-RBAC mode.
	APIServer *rest.Config
	// Resync is how often every namespace and the cluster-wide bindings are
	// compared again with what they should be, a backstop for changes the
	// watches missed (an unmanaged binding that held one of our names going
	// away, say). Zero means 10 minutes; otherwise at least 1 second.
	Resync time.Duration
}

// BindingReconciler keeps, in a hub-RBAC-mode cluster, exactly the bindings
// that give the hub's role groups their meaning: access.ClusterBindings and
// access.NamespaceBindings for every namespace that is not being deleted.
// It watches namespaces and the bindings that carry access.BindingSelector's
// labels, creates what is missing, repairs what drifted (a wrong roleRef by
// deleting and recreating the binding, since roleRef is immutable; wrong
// subjects or labels by an update) and deletes labelled bindings that should
// not exist. A binding without both labels is never read, changed or deleted,
// even when it holds one of our names: the reconciler then logs and leaves
// that binding missing.
type BindingReconciler struct {
	cfg    BindingReconcilerConfig
	logger *slog.Logger
	client kubernetes.Interface
	http   *http.Client
}

// clusterKey is the work-queue key of the ClusterRoleBindings; every other
// key is a namespace's name, which is never empty.
const clusterKey = ""

// NewBindingReconciler validates cfg. It does no I/O.
func NewBindingReconciler(cfg BindingReconcilerConfig, logger *slog.Logger) (*BindingReconciler, error) {
	if cfg.APIServer == nil {
		return nil, errors.New("binding reconciler: the API server config is required")
	}
	switch {
	case cfg.Resync == 0:
		cfg.Resync = 10 * time.Minute
	case cfg.Resync < time.Second:
		return nil, fmt.Errorf("binding reconciler: resync period %s is below 1s", cfg.Resync)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	rc := rest.CopyConfig(cfg.APIServer)
	rc.UserAgent = "tether-agent (binding reconciler)"
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 20, 50
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("binding reconciler: %w", err)
	}
	client, err := kubernetes.NewForConfigAndClient(rc, hc)
	if err != nil {
		return nil, fmt.Errorf("binding reconciler: %w", err)
	}
	return &BindingReconciler{cfg: cfg, logger: logger, client: client, http: hc}, nil
}

// Run keeps the bindings until ctx is done, and returns only when every
// goroutine it started has exited. Errors on single bindings are logged and
// retried with backoff; Run returns an error only if its watches could not
// start.
func (r *BindingReconciler) Run(ctx context.Context) error {
	defer utilnet.CloseIdleConnectionsFor(r.http.Transport)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nsFactory := informers.NewSharedInformerFactory(r.client, 0)
	bindingFactory := informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = access.BindingSelector }))
	nsInformer := nsFactory.Core().V1().Namespaces()
	crbInformer := bindingFactory.Rbac().V1().ClusterRoleBindings()
	rbInformer := bindingFactory.Rbac().V1().RoleBindings()

	queue := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{})
	defer queue.ShutDown()

	enqueue := func(key func(obj any) string) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { queue.Add(key(obj)) },
			UpdateFunc: func(_, obj any) { queue.Add(key(obj)) },
			DeleteFunc: func(obj any) { queue.Add(key(obj)) },
		}
	}
	// A deleted namespace needs nothing: its RoleBindings go with it. Its
	// key is still queued, and found to have nothing to do.
	if _, err := nsInformer.Informer().AddEventHandler(enqueue(objectName)); err != nil {
		return fmt.Errorf("binding reconciler: watch namespaces: %w", err)
	}
	if _, err := crbInformer.Informer().AddEventHandler(enqueue(func(any) string { return clusterKey })); err != nil {
		return fmt.Errorf("binding reconciler: watch cluster role bindings: %w", err)
	}
	if _, err := rbInformer.Informer().AddEventHandler(enqueue(objectNamespace)); err != nil {
		return fmt.Errorf("binding reconciler: watch role bindings: %w", err)
	}
	s := &bindingSync{
		client:     r.client,
		logger:     r.logger,
		namespaces: nsInformer.Lister(),
		crbs:       crbInformer.Lister(),
		rbs:        rbInformer.Lister(),
	}

	nsFactory.Start(ctx.Done())
	bindingFactory.Start(ctx.Done())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		queue.ShutDown()
		wg.Wait()
		nsFactory.Shutdown()
		bindingFactory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(),
		nsInformer.Informer().HasSynced, crbInformer.Informer().HasSynced, rbInformer.Informer().HasSynced) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("binding reconciler: watches did not sync")
	}
	r.logger.Info("binding reconciler started")

	wg.Go(func() { // the worker: one key at a time, so no two syncs race
		for r.processNext(ctx, queue, s) {
		}
	})
	wg.Go(func() { // the backstop: every key, every Resync
		t := time.NewTicker(r.cfg.Resync)
		defer t.Stop()
		for {
			s.enqueueAll(queue)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	<-ctx.Done()
	return nil
}

func (r *BindingReconciler) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], s *bindingSync) bool {
	key, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(key)
	var err error
	if key == clusterKey {
		err = s.syncCluster(ctx)
	} else {
		err = s.syncNamespace(ctx, key)
	}
	switch {
	case err == nil:
		queue.Forget(key)
	case ctx.Err() != nil:
	case errors.Is(err, errCacheBehind):
		r.logger.Debug("binding cache behind; retrying", "namespace", key, "err", err)
		queue.AddRateLimited(key)
	default:
		r.logger.Warn("binding reconcile failed; retrying", "namespace", key, "err", err)
		queue.AddRateLimited(key)
	}
	return true
}

// Remove deletes every binding that carries access.BindingSelector's labels,
// in every namespace and cluster-wide, for a cluster that leaves hub-RBAC
// mode. Call it when Run is not running, or Run puts the bindings back. It
// tries every binding and returns the errors joined.
func (r *BindingReconciler) Remove(ctx context.Context) error {
	defer utilnet.CloseIdleConnectionsFor(r.http.Transport)
	sel := metav1.ListOptions{LabelSelector: access.BindingSelector}
	var errs []error
	crbs, err := r.client.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		return fmt.Errorf("list managed cluster role bindings: %w", err)
	}
	for _, b := range crbs.Items {
		err := r.client.RbacV1().ClusterRoleBindings().Delete(ctx, b.Name, deleteOptions(b.UID))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete cluster role binding %s: %w", b.Name, err))
		}
	}
	rbs, err := r.client.RbacV1().RoleBindings(metav1.NamespaceAll).List(ctx, sel)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list managed role bindings: %w", err))...)
	}
	for _, b := range rbs.Items {
		err := r.client.RbacV1().RoleBindings(b.Namespace).Delete(ctx, b.Name, deleteOptions(b.UID))
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("delete role binding %s/%s: %w", b.Namespace, b.Name, err))
		}
	}
	if len(errs) == 0 {
		r.logger.Info("managed bindings removed", "cluster_role_bindings", len(crbs.Items), "role_bindings", len(rbs.Items))
	}
	return errors.Join(errs...)
}

// bindingSync compares the informers' view with the desired bindings and
// writes the difference. Only the worker goroutine calls its sync methods.
type bindingSync struct {
	client     kubernetes.Interface
	logger     *slog.Logger
	namespaces corelisters.NamespaceLister
	crbs       rbaclisters.ClusterRoleBindingLister // managed ones only
	rbs        rbaclisters.RoleBindingLister        // managed ones only
}

func (s *bindingSync) enqueueAll(queue workqueue.TypedRateLimitingInterface[string]) {
	queue.Add(clusterKey)
	nss, err := s.namespaces.List(labels.Everything())
	if err != nil { // a cache lister does not fail
		return
	}
	for _, ns := range nss {
		queue.Add(ns.Name)
	}
}

// observed is a managed binding as the informer last saw it; its slices and
// map are the cache's and must not be modified.
type observed struct {
	name     string
	uid      types.UID
	roleRef  rbacv1.RoleRef
	subjects []rbacv1.Subject
	labels   map[string]string
}

// bindingWriter writes one kind of binding in one place.
type bindingWriter interface {
	create(ctx context.Context, b access.Binding) error
	// update sets the subjects and labels of the binding named b.Name
	// whose UID is uid.
	update(ctx context.Context, b access.Binding, uid types.UID) error
	delete(ctx context.Context, name string, uid types.UID) error
	// managed reports whether the live binding named name carries our labels.
	managed(ctx context.Context, name string) (bool, error)
}

func (s *bindingSync) syncCluster(ctx context.Context) error {
	crbs, err := s.crbs.List(labels.Everything())
	if err != nil {
		return err
	}
	var have []observed
	for _, b := range crbs {
		have = append(have, observed{b.Name, b.UID, b.RoleRef, b.Subjects, b.Labels})
	}
	return s.apply(ctx, crbWriter{s.client}, access.ClusterBindings(), have)
}

func (s *bindingSync) syncNamespace(ctx context.Context, name string) error {
	ns, err := s.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil // gone, and its bindings with it
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil // the API server refuses new objects in it
	}
	rbs, err := s.rbs.RoleBindings(name).List(labels.Everything())
	if err != nil {
		return err
	}
	var have []observed
	for _, b := range rbs {
		have = append(have, observed{b.Name, b.UID, b.RoleRef, b.Subjects, b.Labels})
	}
	return s.apply(ctx, rbWriter{s.client, name}, access.NamespaceBindings(name), have)
}

// apply makes have (managed bindings of one kind in one place) match want.
func (s *bindingSync) apply(ctx context.Context, w bindingWriter, want []access.Binding, have []observed) error {
	byName := make(map[string]observed, len(have))
	for _, o := range have {
		byName[o.name] = o
	}
	var errs []error
	for _, b := range want {
		o, ok := byName[b.Name]
		delete(byName, b.Name)
		var err error
		switch {
		case !ok:
			err = s.create(ctx, w, b)
		case o.roleRef != roleRef(b):
			s.logger.Info("binding role changed; recreating", "kind", b.Kind, "namespace", b.Namespace, "binding", b.Name, "role", o.roleRef.Name)
			err = w.delete(ctx, o.name, o.uid)
			if err == nil || apierrors.IsNotFound(err) {
				err = s.create(ctx, w, b)
			}
		case !reflect.DeepEqual(o.subjects, subjects(b)) || !maps.Equal(o.labels, b.Labels):
			s.logger.Info("binding drifted; repairing", "kind", b.Kind, "namespace", b.Namespace, "binding", b.Name)
			err = w.update(ctx, b, o.uid)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", b.Kind, qualified(b.Namespace, b.Name), err))
		}
	}
	for _, o := range byName {
		s.logger.Info("unexpected managed binding; deleting", "namespace", namespaceOf(want), "binding", o.name)
		if err := w.delete(ctx, o.name, o.uid); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", qualified(namespaceOf(want), o.name), err))
		}
	}
	return errors.Join(errs...)
}

func (s *bindingSync) create(ctx context.Context, w bindingWriter, b access.Binding) error {
	err := w.create(ctx, b)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	// Either the cache is behind (retry) or a binding without our labels
	// holds the name: never touch it. The periodic resync tries again.
	mine, gerr := w.managed(ctx, b.Name)
	if gerr != nil {
		return err
	}
	if mine {
		return fmt.Errorf("%w: %w", errCacheBehind, err)
	}
	s.logger.Warn("binding name held by an unmanaged binding; left alone", "kind", b.Kind, "namespace", b.Namespace, "binding", b.Name)
	return nil
}

// errCacheBehind marks a write that failed because the informers had not
// yet seen an earlier one: the retry is routine.
var errCacheBehind = errors.New("cache behind")

func roleRef(b access.Binding) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: b.ClusterRole}
}

func subjects(b access.Binding) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: b.Group}}
}

func objectMeta(b access.Binding) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: b.Name, Namespace: b.Namespace, Labels: maps.Clone(b.Labels)}
}

func deleteOptions(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

func namespaceOf(want []access.Binding) string {
	if len(want) == 0 {
		return ""
	}
	return want[0].Namespace
}

// objectName and objectNamespace key informer events, tombstones included.
func objectName(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return clusterKey
	}
	return m.GetName()
}

func objectNamespace(obj any) string {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return clusterKey
	}
	return m.GetNamespace()
}

func isManaged(l map[string]string) bool {
	return l[access.ManagedByLabel] == access.ManagedByValue && l[access.ComponentLabel] == access.ComponentValue
}

type crbWriter struct{ client kubernetes.Interface }

func (w crbWriter) create(ctx context.Context, b access.Binding) error {
	_, err := w.client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: objectMeta(b), RoleRef: roleRef(b), Subjects: subjects(b),
	}, metav1.CreateOptions{})
	return err
}

func (w crbWriter) update(ctx context.Context, b access.Binding, uid types.UID) error {
	cur, err := w.client.RbacV1().ClusterRoleBindings().Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.UID != uid || !isManaged(cur.Labels) {
		return apierrors.NewConflict(rbacv1.Resource("clusterrolebindings"), b.Name, errors.New("changed since it was read"))
	}
	cur.Labels, cur.Subjects = maps.Clone(b.Labels), subjects(b)
	_, err = w.client.RbacV1().ClusterRoleBindings().Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (w crbWriter) delete(ctx context.Context, name string, uid types.UID) error {
	return w.client.RbacV1().ClusterRoleBindings().Delete(ctx, name, deleteOptions(uid))
}

func (w crbWriter) managed(ctx context.Context, name string) (bool, error) {
	cur, err := w.client.RbacV1().ClusterRoleBindings().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return isManaged(cur.Labels), nil
}

type rbWriter struct {
	client    kubernetes.Interface
	namespace string
}

func (w rbWriter) create(ctx context.Context, b access.Binding) error {
	_, err := w.client.RbacV1().RoleBindings(w.namespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: objectMeta(b), RoleRef: roleRef(b), Subjects: subjects(b),
	}, metav1.CreateOptions{})
	return err
}

func (w rbWriter) update(ctx context.Context, b access.Binding, uid types.UID) error {
	cur, err := w.client.RbacV1().RoleBindings(w.namespace).Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.UID != uid || !isManaged(cur.Labels) {
		return apierrors.NewConflict(rbacv1.Resource("rolebindings"), b.Name, errors.New("changed since it was read"))
	}
	cur.Labels, cur.Subjects = maps.Clone(b.Labels), subjects(b)
	_, err = w.client.RbacV1().RoleBindings(w.namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func (w rbWriter) delete(ctx context.Context, name string, uid types.UID) error {
	return w.client.RbacV1().RoleBindings(w.namespace).Delete(ctx, name, deleteOptions(uid))
}

func (w rbWriter) managed(ctx context.Context, name string) (bool, error) {
	cur, err := w.client.RbacV1().RoleBindings(w.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	return isManaged(cur.Labels), nil
}

// MissingPermissionsError lists what the agent's credentials may not do.
type MissingPermissionsError struct {
	// Missing names each refused permission as "VERB RESOURCE[.GROUP][/NAME]",
	// e.g. "impersonate groups" or "bind clusterroles.rbac.authorization.k8s.io/admin".
	Missing []string
}

func (e *MissingPermissionsError) Error() string {
	return fmt.Sprintf("the agent's Kubernetes credentials lack %d permission(s): %s; apply deploy/agent-rbac.yaml (kubectl apply -f deploy/agent-rbac.yaml) and run the agent as the tether-system/tether-agent service account",
		len(e.Missing), strings.Join(e.Missing, ", "))
}

// permission is one SelfSubjectAccessReview; Namespace is empty, meaning
// every namespace.
type permission struct {
	verb, group, resource, name string
}

func (p permission) String() string {
	s := p.verb + " " + p.resource
	if p.group != "" {
		s += "." + p.group
	}
	if p.name != "" {
		s += "/" + p.name
	}
	return s
}

// requiredPermissions are what the agent needs, in the order reported. In
// Kubernetes-RBAC mode it only impersonates callers; in hub-RBAC mode it
// also keeps the bindings, which the API server lets it create only for
// ClusterRoles it may bind.
func requiredPermissions(hubRBAC bool) []permission {
	ps := []permission{
		{verb: "impersonate", resource: "users"},
		{verb: "impersonate", resource: "groups"},
	}
	if !hubRBAC {
		return ps
	}
	for _, v := range []string{"get", "list", "watch"} {
		ps = append(ps, permission{verb: v, resource: "namespaces"})
	}
	for _, res := range []string{"clusterrolebindings", "rolebindings"} {
		for _, v := range []string{"get", "list", "watch", "create", "update", "delete"} {
			ps = append(ps, permission{verb: v, group: rbacv1.GroupName, resource: res})
		}
	}
	for _, cr := range []string{access.ClusterRoleView, access.ClusterRoleEdit, access.ClusterRoleAdmin, access.ClusterRoleClusterAdmin} {
		ps = append(ps, permission{verb: "bind", group: rbacv1.GroupName, resource: "clusterroles", name: cr})
	}
	return ps
}

// CheckPermissions asks the API server (SelfSubjectAccessReview) whether
// client's credentials may do what the agent needs: impersonate users and
// groups, and with hubRBAC also watch namespaces, manage ClusterRoleBindings
// and RoleBindings in every namespace and bind the ClusterRoles view, edit,
// admin and cluster-admin. If anything is refused the error is a
// *MissingPermissionsError naming each permission and saying to apply
// deploy/agent-rbac.yaml; other errors are the API server's.
func CheckPermissions(ctx context.Context, client kubernetes.Interface, hubRBAC bool) error {
	var missing []string
	for _, p := range requiredPermissions(hubRBAC) {
		review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: p.verb, Group: p.group, Resource: p.resource, Name: p.name,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("check permission %q: %w", p, err)
		}
		if !review.Status.Allowed {
			missing = append(missing, p.String())
		}
	}
	if len(missing) > 0 {
		return &MissingPermissionsError{Missing: missing}
	}
	return nil
}
