package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// pageData is what every page's template gets.
type pageData struct {
	Title string
	// Active names the nav link of the page's section.
	Active string
	// Who is the signed-in principal's display name; empty when signed
	// out (then there is no nav).
	Who string
	// CSRF is the session's token, for every form.
	CSRF  string
	Flash string
	Error string
	Body  any
}

// pageNames are the templates in templates/, each with layout.html.
var pageNames = []string{"signin", "error", "clusters", "cluster", "assignments", "audit", "connect"}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"lower": strings.ToLower,
	"list":  func(s ...string) []string { return s },
	"nodes": func(n int) string {
		if n < 0 {
			return "unknown"
		}
		return fmt.Sprint(n)
	},
	"orDash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render answers with a page; tmpl names the template to run ("layout"
// for a whole page, a fragment otherwise).
func (s *server) renderTemplate(w http.ResponseWriter, status int, page, tmpl string, data any) {
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, tmpl, data); err != nil {
		s.logger.Error("console: render page", "page", page, "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (s *server) render(w http.ResponseWriter, status int, page string, data pageData) {
	s.renderTemplate(w, status, page, "layout", data)
}

// render answers with a page of the signed-in session.
func (c *call) render(w http.ResponseWriter, status int, page string, data pageData) {
	data.Who, data.CSRF = c.sess.Name, c.sess.CSRF
	c.s.render(w, status, page, data)
}
