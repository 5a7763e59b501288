package hub

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/store"
)

// Location is one region of the hub, as Azure Arc has regions: clusters
// are registered in a location, and their agents dial its URL.
type Location struct {
	// Name is shown to people, e.g. "East US 2"; its ID (LocationID) is what
	// clusters store and what commands accept besides the name.
	Name string `json:"name"`
	// URL is the hub endpoint the location's agents dial for their tunnel
	// and status reports, https://HOST[:PORT][/PATH]; enrollment answers
	// with it (agent.EnrollResponse.TunnelURL).
	URL string `json:"url"`
	// Endpoints are the HOST:PORT names an agent of the location must be
	// allowed to reach through its firewall or proxy. Empty means the host
	// and port of URL.
	Endpoints []string `json:"endpoints,omitempty"`
}

// LocationView is how GET /api/v1/locations shows a location.
type LocationView struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	URL       string   `json:"url"`
	Endpoints []string `json:"endpoints"`
}

// defaultLocation is the one location of a hub configured with none.
const defaultLocation = "local"

// LocationID is the ID of the location called name: its name with the
// spaces removed and folded to lower case, as Azure Arc turns "East US 2"
// into "eastus2".
func LocationID(name string) string {
	return strings.ToLower(strings.Join(strings.Fields(name), ""))
}

// newLocations validates the configured locations and gives them their IDs
// and default endpoints.
func newLocations(locs []Location) ([]LocationView, error) {
	if len(locs) == 0 {
		return []LocationView{{ID: defaultLocation, Name: defaultLocation, Endpoints: []string{}}}, nil
	}
	views := make([]LocationView, 0, len(locs))
	seen := map[string]string{} // ID -> name
	for _, l := range locs {
		v, err := newLocation(l)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[v.ID]; dup {
			return nil, fmt.Errorf("locations %q and %q have the same ID %q (names compare without spaces and case); rename one", other, l.Name, v.ID)
		}
		seen[v.ID] = l.Name
		views = append(views, v)
	}
	return views, nil
}

func newLocation(l Location) (LocationView, error) {
	if err := store.ValidateLocation(l.Name); err != nil || l.Name == "" {
		return LocationView{}, fmt.Errorf("location name %q: want 1 to %d characters of text without surrounding spaces", l.Name, store.MaxLocationLen)
	}
	id := LocationID(l.Name)
	if strings.ContainsFunc(id, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("-_.", r)
	}) {
		return LocationView{}, fmt.Errorf("location name %q: use letters, digits, spaces and '-', '_' or '.'", l.Name)
	}
	u, err := url.Parse(l.URL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return LocationView{}, fmt.Errorf("location %q: url %q: want https://HOST[:PORT][/PATH], the hub address its agents dial", l.Name, l.URL)
	}
	v := LocationView{ID: id, Name: l.Name, URL: strings.TrimSuffix(u.String(), "/"), Endpoints: l.Endpoints}
	if len(v.Endpoints) == 0 {
		port := u.Port()
		if port == "" {
			port = "443"
		}
		v.Endpoints = []string{net.JoinHostPort(u.Hostname(), port)}
	}
	for _, e := range v.Endpoints {
		if err := checkEndpoint(e); err != nil {
			return LocationView{}, fmt.Errorf("location %q: endpoint %q: %w", l.Name, e, err)
		}
	}
	return v, nil
}

// checkEndpoint checks a HOST:PORT endpoint name.
func checkEndpoint(e string) error {
	host, port, err := net.SplitHostPort(e)
	if err != nil || host == "" || strings.ContainsFunc(host, unicode.IsSpace) {
		return errors.New("want HOST:PORT, e.g. eastus2.hub.example.com:443")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", port)
	}
	return nil
}

// findLocation returns the location called or identified by s ("East US
// 2", "eastus2"); the empty string finds the default, the first.
func (h *Hub) findLocation(s string) (LocationView, bool) {
	if s == "" {
		return h.locations[0], true
	}
	id := LocationID(s)
	for _, l := range h.locations {
		if l.ID == id {
			return l, true
		}
	}
	return LocationView{}, false
}

// locationIDs lists the valid location IDs, for error messages.
func (h *Hub) locationIDs() string {
	ids := make([]string, len(h.locations))
	for i, l := range h.locations {
		ids[i] = l.ID
	}
	return strings.Join(ids, ", ")
}

// locationRoutes serve the locations to anyone: like Azure's discovery
// API, they name public endpoints, and an agent's operator needs them
// before anything is set up.
func (h *Hub) locationRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/locations", h.listLocations)
	mux.HandleFunc("GET /api/v1/locations/{location}", h.getLocation)
}

func (h *Hub) listLocations(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.locations)
}

func (h *Hub) getLocation(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("location")
	l, ok := h.findLocation(name)
	if !ok || name == "" {
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("no location %q on this hub; valid locations: %s (tether locations list)", name, h.locationIDs()))
		return
	}
	writeJSON(w, http.StatusOK, l)
}
