package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/issuer"
	"tether.dev/tether/internal/store"
)

// The directory API manages the users, service principals and groups of
// the hub's embedded directory, shaped like `az ad`: the field names are
// Microsoft Graph's, and an {id} in a path may be what az ad accepts too
// (a user's login name, a service principal's client ID, a group's
// display name when it is unique).

// PrincipalView is how the admin API shows a user, service principal or
// group.
type PrincipalView struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
	// Type is "user", "servicePrincipal" or "group".
	Type string `json:"type"`
	// UserPrincipalName is a user's login name.
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	// AppID is a service principal's client ID, with which it signs in.
	AppID     string    `json:"appId,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
}

// UserRequest is the body of POST /api/v1/users.
type UserRequest struct {
	DisplayName string `json:"displayName"`
	LoginName   string `json:"loginName"`
	// Password, when empty, is generated and returned once.
	Password string `json:"password,omitempty"`
}

// CreatedUser is the answer to POST /api/v1/users.
type CreatedUser struct {
	PrincipalView
	// Password is the generated password, shown once; empty when the
	// request gave one.
	Password string `json:"password,omitempty"`
}

// UserUpdate is the body of PATCH /api/v1/users/{id}; absent fields stay
// as they are.
type UserUpdate struct {
	DisplayName *string `json:"displayName,omitempty"`
	// Password replaces the password; "" removes it, and the user can no
	// longer sign in.
	Password *string `json:"password,omitempty"`
}

// MaxSecretYears is the longest a client secret can be valid.
const MaxSecretYears = 10

// ServicePrincipalRequest is the body of POST /api/v1/service-principals.
type ServicePrincipalRequest struct {
	DisplayName string `json:"displayName"`
	// Years is how long the first client secret is valid: 1 to
	// MaxSecretYears; zero means 1.
	Years int `json:"years,omitempty"`
}

// SecretRequest is the body of POST /api/v1/service-principals/{id}/secrets.
type SecretRequest struct {
	Description string `json:"description,omitempty"`
	// Years is how long the secret is valid: 1 to MaxSecretYears; zero
	// means 1.
	Years int `json:"years,omitempty"`
}

// Credential is a new client secret. Password, the secret, is shown once
// and never stored.
type Credential struct {
	KeyID     string    `json:"keyId"`
	Password  string    `json:"password"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CreatedServicePrincipal is the answer to POST /api/v1/service-principals:
// the service principal and its first client secret.
type CreatedServicePrincipal struct {
	PrincipalView
	Credential
}

// NewCredential is the answer to POST
// /api/v1/service-principals/{id}/secrets.
type NewCredential struct {
	AppID string `json:"appId"`
	Credential
}

// SecretView is how the admin API lists a client secret: never the secret
// nor its hash.
type SecretView struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

// GroupRequest is the body of POST /api/v1/groups.
type GroupRequest struct {
	DisplayName string `json:"displayName"`
}

// MemberRequest is the body of POST /api/v1/groups/{id}/members.
type MemberRequest struct {
	// MemberID is the object ID of a user, service principal or group.
	MemberID string `json:"memberId"`
}

// CheckResult is the answer to GET
// /api/v1/groups/{id}/members/{memberId}/check.
type CheckResult struct {
	// Value reports whether the principal is a member, directly or
	// through nested groups.
	Value bool `json:"value"`
}

// MeView is the answer to GET /api/v1/me: the signed-in caller.
type MeView struct {
	PrincipalView
	// Issuer is the URL of the issuer the caller signed in at.
	Issuer string `json:"issuer"`
	// Groups are the object IDs of the caller's groups, nested ones
	// included.
	Groups []string `json:"groups"`
}

// Request shapes, for error messages.
const (
	userRequestShape   = `{"displayName":..., "loginName":..., "password":...}`
	userUpdateShape    = `{"displayName":..., "password":...}`
	spRequestShape     = `{"displayName":..., "years":...}`
	secretRequestShape = `{"description":..., "years":...}`
	groupRequestShape  = `{"displayName":...}`
	memberRequestShape = `{"memberId":...}`
)

// kind is what the directory API says about one principal type.
type kind struct {
	typ  access.PrincipalType
	path string // under /api/v1
	noun string // in messages
	cli  string // the tether ad subcommand
}

var (
	userKind  = kind{typ: access.PrincipalUser, path: "users", noun: "user", cli: "user"}
	spKind    = kind{typ: access.PrincipalServicePrincipal, path: "service-principals", noun: "service principal", cli: "sp"}
	groupKind = kind{typ: access.PrincipalGroup, path: "groups", noun: "group", cli: "group"}
)

func (h *Hub) directoryRoutes(mux *http.ServeMux) {
	read := func(next http.HandlerFunc) http.HandlerFunc {
		return h.authorize(access.ActionPrincipalsRead, rootScope, next)
	}
	write := func(next http.HandlerFunc) http.HandlerFunc {
		return h.authorize(access.ActionPrincipalsWrite, rootScope, next)
	}
	for _, k := range []kind{userKind, spKind, groupKind} {
		base := "/api/v1/" + k.path
		mux.HandleFunc("GET "+base, read(h.listPrincipals(k)))
		mux.HandleFunc("GET "+base+"/{id}", read(h.showPrincipal(k)))
		mux.HandleFunc("DELETE "+base+"/{id}", write(h.deletePrincipal(k)))
	}
	mux.HandleFunc("POST /api/v1/users", write(h.createUser))
	mux.HandleFunc("PATCH /api/v1/users/{id}", write(h.updateUser))
	mux.HandleFunc("POST /api/v1/service-principals", write(h.createServicePrincipal))
	mux.HandleFunc("GET /api/v1/service-principals/{id}/secrets", read(h.listSecrets))
	mux.HandleFunc("POST /api/v1/service-principals/{id}/secrets", write(h.createSecret))
	mux.HandleFunc("DELETE /api/v1/service-principals/{id}/secrets/{secretId}", write(h.deleteSecret))
	mux.HandleFunc("POST /api/v1/groups", write(h.createGroup))
	mux.HandleFunc("GET /api/v1/groups/{id}/members", read(h.listMembers))
	mux.HandleFunc("POST /api/v1/groups/{id}/members", write(h.addMember))
	mux.HandleFunc("DELETE /api/v1/groups/{id}/members/{memberId}", write(h.removeMember))
	mux.HandleFunc("GET /api/v1/groups/{id}/members/{memberId}/check", read(h.checkMember))
	mux.HandleFunc("GET /api/v1/me", h.authorize("", nil, h.me))
}

func principalView(p store.Principal) PrincipalView {
	return PrincipalView{ID: p.ID, DisplayName: p.DisplayName, Type: string(p.Type), UserPrincipalName: p.LoginName, AppID: p.ClientID, CreatedAt: p.CreatedAt}
}

func principalViews(ps []store.Principal) []PrincipalView {
	out := make([]PrincipalView, 0, len(ps))
	for _, p := range ps {
		out = append(out, principalView(p))
	}
	return out
}

func (h *Hub) listPrincipals(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ps, err := h.cfg.Store.ListPrincipals(r.Context(), store.PrincipalFilter{Type: k.typ})
		if err != nil {
			h.internalError(w, "list "+k.noun+"s", err)
			return
		}
		writeJSON(w, http.StatusOK, principalViews(ps))
	}
}

func (h *Hub) showPrincipal(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, ok := h.principalFromPath(w, r, k); ok {
			writeJSON(w, http.StatusOK, principalView(p))
		}
	}
}

func (h *Hub) deletePrincipal(k kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := h.principalFromPath(w, r, k)
		if !ok {
			return
		}
		if err := h.cfg.Store.DeletePrincipal(r.Context(), p.ID); err != nil {
			h.storeFailed(w, "delete the "+k.noun, err, "")
			return
		}
		h.logger.Info("principal deleted", "principal", p.ID)
		w.WriteHeader(http.StatusNoContent)
	}
}

// principalFromPath finds the principal of kind k that the path's {id}
// names. When it returns false it has answered.
func (h *Hub) principalFromPath(w http.ResponseWriter, r *http.Request, k kind) (store.Principal, bool) {
	ref := r.PathValue("id")
	p, err := h.findPrincipal(r.Context(), k, ref)
	var amb *ambiguousError
	switch {
	case errors.As(err, &amb):
		apistatus.Write(w, http.StatusConflict, fmt.Sprintf("%d groups are named %q (%s); name one by its object ID", len(amb.ids), ref, strings.Join(amb.ids, ", ")))
		return store.Principal{}, false
	case errors.Is(err, store.ErrNotFound):
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("no %s %q in the hub's directory; list them with: tether ad %s list", k.noun, ref, k.cli))
		return store.Principal{}, false
	case err != nil:
		h.internalError(w, "look up the "+k.noun, err)
		return store.Principal{}, false
	}
	return p, true
}

// ambiguousError: several groups have the display name asked for.
type ambiguousError struct{ ids []string }

func (e *ambiguousError) Error() string {
	return "ambiguous group name: " + strings.Join(e.ids, ", ")
}

// findPrincipal finds the principal of kind k that ref names: its object
// ID, else a user's login name (ignoring case), a service principal's
// client ID, or a group's display name when only one group has it
// (ignoring case; *ambiguousError otherwise). It returns an error
// matching store.ErrNotFound when nothing matches.
func (h *Hub) findPrincipal(ctx context.Context, k kind, ref string) (store.Principal, error) {
	st := h.cfg.Store
	isUUID := store.ValidateUUID(ref) == nil
	if isUUID {
		p, err := st.GetPrincipal(ctx, ref)
		switch {
		case err == nil && p.Type == k.typ:
			return p, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return store.Principal{}, err
		}
	}
	var p store.Principal
	var err error
	switch {
	case k.typ == access.PrincipalUser && store.ValidateLoginName(ref) == nil:
		p, err = st.GetUserByLogin(ctx, ref)
		p.PasswordHash = nil
	case k.typ == access.PrincipalServicePrincipal && isUUID:
		p, err = st.GetServicePrincipalByClientID(ctx, ref)
	case k.typ == access.PrincipalGroup:
		return h.groupByName(ctx, ref)
	default:
		err = store.ErrNotFound
	}
	return p, err
}

// groupByName finds the one group whose display name is name, ignoring
// case.
func (h *Hub) groupByName(ctx context.Context, name string) (store.Principal, error) {
	groups, err := h.cfg.Store.ListPrincipals(ctx, store.PrincipalFilter{Type: access.PrincipalGroup})
	if err != nil {
		return store.Principal{}, err
	}
	groups = slices.DeleteFunc(groups, func(g store.Principal) bool { return !strings.EqualFold(g.DisplayName, name) })
	switch len(groups) {
	case 0:
		return store.Principal{}, fmt.Errorf("group %q: %w", name, store.ErrNotFound)
	case 1:
		return groups[0], nil
	}
	amb := &ambiguousError{}
	for _, g := range groups {
		amb.ids = append(amb.ids, g.ID)
	}
	return store.Principal{}, amb
}

// createPrincipal gives p a new object ID and creation time and stores
// it. When it returns false it has answered.
func (h *Hub) createPrincipal(w http.ResponseWriter, r *http.Request, p *store.Principal) bool {
	id, err := newUUID()
	if err != nil {
		h.internalError(w, "make an object ID", err)
		return false
	}
	p.ID, p.CreatedAt = id, h.storedNow()
	if err := h.cfg.Store.CreatePrincipal(r.Context(), *p); err != nil {
		hint := ""
		if errors.Is(err, store.ErrConflict) && p.Type == access.PrincipalUser {
			hint = fmt.Sprintf("show that user with: tether ad user show --id %s", p.LoginName)
		}
		h.storeFailed(w, "create the "+string(p.Type), err, hint)
		return false
	}
	h.logger.Info("principal created", "principal", p.ID, "type", string(p.Type))
	return true
}

func (h *Hub) createUser(w http.ResponseWriter, r *http.Request) {
	var req UserRequest
	if !readJSON(w, r, &req, userRequestShape) {
		return
	}
	created := CreatedUser{}
	pw := req.Password
	if pw == "" {
		pw = issuer.NewPassword()
		created.Password = pw
	}
	// Check the names before the costly hash.
	p := store.Principal{Type: access.PrincipalUser, DisplayName: req.DisplayName, LoginName: req.LoginName}
	if err := errors.Join(store.ValidateDisplayName(p.DisplayName), store.ValidateLoginName(p.LoginName)); err != nil {
		apistatus.Write(w, http.StatusBadRequest, strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	hash, err := issuer.HashPassword(pw)
	if err != nil {
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	p.PasswordHash = hash
	if !h.createPrincipal(w, r, &p) {
		return
	}
	created.PrincipalView = principalView(p)
	writeJSON(w, http.StatusCreated, created)
}

func (h *Hub) updateUser(w http.ResponseWriter, r *http.Request) {
	var req UserUpdate
	if !readJSON(w, r, &req, userUpdateShape) {
		return
	}
	p, ok := h.principalFromPath(w, r, userKind)
	if !ok {
		return
	}
	var hash []byte
	if req.Password != nil && *req.Password != "" {
		var err error
		if hash, err = issuer.HashPassword(*req.Password); err != nil {
			apistatus.Write(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if req.DisplayName != nil {
		if err := h.cfg.Store.SetDisplayName(r.Context(), p.ID, *req.DisplayName); err != nil {
			h.storeFailed(w, "rename the user", err, "")
			return
		}
		p.DisplayName = *req.DisplayName
	}
	if req.Password != nil {
		if err := h.cfg.Store.SetPasswordHash(r.Context(), p.ID, hash); err != nil {
			h.storeFailed(w, "set the password", err, "")
			return
		}
		h.logger.Info("password changed", "principal", p.ID)
	}
	writeJSON(w, http.StatusOK, principalView(p))
}

func (h *Hub) createServicePrincipal(w http.ResponseWriter, r *http.Request) {
	var req ServicePrincipalRequest
	if !readJSON(w, r, &req, spRequestShape) {
		return
	}
	years, ok := secretYears(w, req.Years)
	if !ok {
		return
	}
	clientID, err := newUUID()
	if err != nil {
		h.internalError(w, "make a client ID", err)
		return
	}
	p := store.Principal{Type: access.PrincipalServicePrincipal, DisplayName: req.DisplayName, ClientID: clientID}
	if !h.createPrincipal(w, r, &p) {
		return
	}
	cred, err := h.newCredential(r.Context(), p.ID, "", years)
	if err != nil {
		// No secret, no use: take the service principal back.
		if derr := h.cfg.Store.DeletePrincipal(r.Context(), p.ID); derr != nil {
			err = errors.Join(err, derr)
		}
		h.internalError(w, "create a client secret", err)
		return
	}
	writeJSON(w, http.StatusCreated, CreatedServicePrincipal{PrincipalView: principalView(p), Credential: cred})
}

// secretYears checks a request's secret lifetime in years. When it
// returns false it has answered.
func secretYears(w http.ResponseWriter, years int) (int, bool) {
	switch {
	case years == 0:
		return 1, true
	case years < 0 || years > MaxSecretYears:
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("years %d: a client secret is valid 1 to %d years", years, MaxSecretYears))
		return 0, false
	}
	return years, true
}

// newCredential makes and stores a client secret for the service
// principal with object ID spID.
func (h *Hub) newCredential(ctx context.Context, spID, description string, years int) (Credential, error) {
	id, err := newUUID()
	if err != nil {
		return Credential{}, err
	}
	secret, hash := issuer.NewClientSecret()
	now := h.storedNow()
	sec := store.ClientSecret{ID: id, PrincipalID: spID, Hash: hash, Description: description, CreatedAt: now, ExpiresAt: now.AddDate(years, 0, 0)}
	if err := h.cfg.Store.CreateClientSecret(ctx, sec); err != nil {
		return Credential{}, err
	}
	h.logger.Info("client secret created", "principal", spID, "secret", id)
	return Credential{KeyID: id, Password: secret, ExpiresAt: sec.ExpiresAt}, nil
}

func (h *Hub) createSecret(w http.ResponseWriter, r *http.Request) {
	var req SecretRequest
	if !readJSON(w, r, &req, secretRequestShape) {
		return
	}
	years, ok := secretYears(w, req.Years)
	if !ok {
		return
	}
	p, ok := h.principalFromPath(w, r, spKind)
	if !ok {
		return
	}
	cred, err := h.newCredential(r.Context(), p.ID, req.Description, years)
	if err != nil {
		h.storeFailed(w, "create a client secret", err, "")
		return
	}
	writeJSON(w, http.StatusCreated, NewCredential{AppID: p.ClientID, Credential: cred})
}

func (h *Hub) listSecrets(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principalFromPath(w, r, spKind)
	if !ok {
		return
	}
	secs, err := h.cfg.Store.ListClientSecrets(r.Context(), p.ID)
	if err != nil {
		h.storeFailed(w, "list client secrets", err, "")
		return
	}
	out := make([]SecretView, 0, len(secs))
	for _, s := range secs {
		out = append(out, SecretView{ID: s.ID, Description: s.Description, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) deleteSecret(w http.ResponseWriter, r *http.Request) {
	p, ok := h.principalFromPath(w, r, spKind)
	if !ok {
		return
	}
	id := r.PathValue("secretId")
	err := h.cfg.Store.DeleteClientSecret(r.Context(), p.ID, id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("service principal %s has no client secret %q; list them with: tether ad sp credential list --id %s", p.ID, id, p.ID))
		return
	case err != nil:
		h.internalError(w, "delete the client secret", err)
		return
	}
	h.logger.Info("client secret deleted", "principal", p.ID, "secret", id)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) createGroup(w http.ResponseWriter, r *http.Request) {
	var req GroupRequest
	if !readJSON(w, r, &req, groupRequestShape) {
		return
	}
	p := store.Principal{Type: access.PrincipalGroup, DisplayName: req.DisplayName}
	if h.createPrincipal(w, r, &p) {
		writeJSON(w, http.StatusCreated, principalView(p))
	}
}

func (h *Hub) listMembers(w http.ResponseWriter, r *http.Request) {
	g, ok := h.principalFromPath(w, r, groupKind)
	if !ok {
		return
	}
	ms, err := h.cfg.Store.ListMembers(r.Context(), g.ID)
	if err != nil {
		h.storeFailed(w, "list the members", err, "")
		return
	}
	writeJSON(w, http.StatusOK, principalViews(ms))
}

func (h *Hub) addMember(w http.ResponseWriter, r *http.Request) {
	var req MemberRequest
	if !readJSON(w, r, &req, memberRequestShape) {
		return
	}
	g, ok := h.principalFromPath(w, r, groupKind)
	if !ok {
		return
	}
	err := h.cfg.Store.AddMember(r.Context(), g.ID, req.MemberID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("no principal %q in the hub's directory; give the object ID of a user, service principal or group (tether ad user|sp|group list)", req.MemberID))
		return
	case errors.Is(err, store.ErrConflict):
		apistatus.Write(w, http.StatusConflict, fmt.Sprintf("%s is already a member of group %s", req.MemberID, g.ID))
		return
	case err != nil:
		h.storeFailed(w, "add the member", err, "a group cannot contain itself, directly or through nested groups")
		return
	}
	h.logger.Info("member added", "principal", req.MemberID, "group", g.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) removeMember(w http.ResponseWriter, r *http.Request) {
	g, ok := h.principalFromPath(w, r, groupKind)
	if !ok {
		return
	}
	id := r.PathValue("memberId")
	err := h.cfg.Store.RemoveMember(r.Context(), g.ID, id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("%q is not a direct member of group %s; list them with: tether ad group member list --group %s", id, g.ID, g.ID))
		return
	case err != nil:
		h.internalError(w, "remove the member", err)
		return
	}
	h.logger.Info("member removed", "principal", id, "group", g.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) checkMember(w http.ResponseWriter, r *http.Request) {
	g, ok := h.principalFromPath(w, r, groupKind)
	if !ok {
		return
	}
	id := r.PathValue("memberId")
	if err := store.ValidateObjectID(id); err != nil {
		apistatus.Write(w, http.StatusBadRequest, "member: "+err.Error())
		return
	}
	groups, err := h.cfg.Store.GroupsOf(r.Context(), id)
	if err != nil {
		h.internalError(w, "look up the groups", err)
		return
	}
	_, found := slices.BinarySearch(groups, g.ID)
	writeJSON(w, http.StatusOK, CheckResult{Value: found})
}

func (h *Hub) me(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r)
	if c.admin {
		apistatus.Write(w, http.StatusBadRequest, "the admin token is not a principal: it has no object ID, groups or roles; sign in (tether login) to act as yourself")
		return
	}
	p := c.principal
	v := MeView{PrincipalView: PrincipalView{ID: p.ID, DisplayName: p.Name, Type: string(p.Type)}, Issuer: p.Issuer, Groups: p.Groups}
	if v.Groups == nil {
		v.Groups = []string{}
	}
	if h.cfg.EmbeddedIssuer != "" && p.Issuer == h.cfg.EmbeddedIssuer {
		sp, err := h.cfg.Store.GetPrincipal(r.Context(), p.ID)
		if err != nil {
			h.storeFailed(w, "look up your principal", err, "sign in again (tether login)")
			return
		}
		v.PrincipalView = principalView(sp)
	}
	writeJSON(w, http.StatusOK, v)
}

// storedNow is the time now as the store keeps it, so that an answer
// shows what later reads show.
func (h *Hub) storedNow() time.Time { return h.cfg.Now().UTC().Truncate(time.Microsecond) }

// storeFailed answers a failed store call of the directory API with the
// store's message and hint, what to do, appended: 404, 409 or 400 by
// the error's kind, else 500 (logged, with doing saying what failed).
func (h *Hub) storeFailed(w http.ResponseWriter, doing string, err error, hint string) {
	code := 0
	switch {
	case errors.Is(err, store.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrCycle):
		code = http.StatusConflict
	case errors.Is(err, store.ErrInvalid):
		code = http.StatusBadRequest
	default:
		h.internalError(w, doing, err)
		return
	}
	msg := doing + ": " + err.Error()
	if hint != "" {
		msg += "; " + hint
	}
	apistatus.Write(w, code, msg)
}
