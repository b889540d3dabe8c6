package portal

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

//go:embed assets/*.html assets/style.css assets/icon.svg
var assets embed.FS

//go:embed assets/copy.js
var copyScript string

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"script": func() template.JS { return template.JS(copyScript) },
	}
	return template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
}

// staticHandler serves the stylesheet and icon (cacheable, no secrets).
func staticHandler() http.Handler {
	sub, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/static/style.css", "/static/icon.svg":
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Del("Pragma")
		files.ServeHTTP(w, r)
	})
}

// layout is what every page template gets.
type layout struct {
	Title  string
	User   string // signed-in user; "" hides the header's sign-out
	CSRF   string
	Notice string
	Error  string
	Script bool // include the copy-to-clipboard script
}

// render executes a template into a buffer first, so that a template error
// becomes a clean 500 and never half a page.
func (p *Portal) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		p.log.Error("portal: render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// page saves the session and renders a page for the signed-in user.
func (p *Portal) page(w http.ResponseWriter, s *session, status int, name string, data any) {
	if err := p.writeSession(w, s); err != nil {
		p.fail(w, err)
		return
	}
	p.render(w, status, name, data)
}

type messagePage struct {
	layout
	Heading, Text string
	SignIn        bool   // offer a sign-in button
	SignInURL     string // default /login
}

// message renders a page with one message and nothing else.
func (p *Portal) message(w http.ResponseWriter, status int, heading, text string, signIn bool) {
	p.render(w, status, "message.html", messagePage{layout: layout{Title: heading}, Heading: heading, Text: text,
		SignIn: signIn, SignInURL: "/login"})
}

func (p *Portal) fail(w http.ResponseWriter, err error) {
	p.log.Error("portal: internal error", "err", err)
	p.message(w, http.StatusInternalServerError, "Something went wrong", "Please try again in a minute. If it keeps happening, tell your administrator.", false)
}

// Time formats of the page (UTC: the server does not know the reader's zone).
func day(t time.Time) string { return t.UTC().Format("2 Jan 2006") }

func stamp(t time.Time) string { return t.UTC().Format("2 Jan 2006 15:04 UTC") }

// ago says how long ago t was, roughly.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	case d < 60*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day") + " ago"
	}
	return day(t)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}
