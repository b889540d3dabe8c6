package portal

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/legate-proxy/legate/internal/control"
	"github.com/legate-proxy/legate/store"
)

// indexPage is the list of app passwords and the create form.
type indexPage struct {
	layout
	Passwords []row
	Form      createForm
	// Stale: the sign-in is too old to create; the form says so.
	Stale bool
	Limit string
}

// createdPage shows a new password once, with the client settings.
type createdPage struct {
	layout
	Name     string
	Groups   []string // the four groups of four
	Secret   string
	UserName string
	Settings []settingRow
	Expires  string
	// Setup is the one-tap device set-up (nil: not offered).
	Setup *setupView
}

func (p *Portal) index(w http.ResponseWriter, r *http.Request, s *session) {
	d := indexPage{layout: p.layoutFor(s)}
	d.Notice = s.flash
	p.renderIndex(w, r, s, http.StatusOK, d)
}

// renderIndex fills in the list and renders the index page.
func (p *Portal) renderIndex(w http.ResponseWriter, r *http.Request, s *session, status int, d indexPage) {
	list, err := p.ctl.ListAppPasswords(r.Context(), s.User)
	if err != nil {
		p.fail(w, err)
		return
	}
	now := p.now()
	for _, l := range list {
		d.Passwords = append(d.Passwords, makeRow(l, now))
	}
	d.Stale = !p.freshAuth(p.settingsOf(r), s)
	if d.Form.Expires == "" {
		d.Form.Expires = "never"
	}
	p.page(w, s, status, "index.html", d)
}

func (p *Portal) layoutFor(s *session) layout {
	return layout{Title: "App passwords", User: s.User, CSRF: s.CSRF}
}

// create makes an app password and shows it in this response, once.
func (p *Portal) create(w http.ResponseWriter, r *http.Request, s *session) {
	if !p.freshAuth(p.settingsOf(r), s) {
		p.seeOther(w, r, s, "/login?reauth=1", "")
		return
	}
	f := readCreateForm(r)
	args, err := f.args()
	if err == nil {
		args.User, args.Via = s.User, "portal"
		var c control.Created
		if c, err = p.ctl.CreateAppPassword(r.Context(), args); err == nil {
			p.reqLog(r).Info("portal: app password created", "user", s.User, "id", c.AppPassword.ID)
			p.page(w, s, http.StatusOK, "created.html", p.createdView(s, c, p.settingsOf(r)))
			return
		}
	}
	status, msg := createError(err)
	if status == http.StatusInternalServerError {
		p.fail(w, err)
		return
	}
	d := indexPage{layout: p.layoutFor(s), Form: f}
	d.Error = msg
	p.renderIndex(w, r, s, status, d)
}

// createError turns an error of create into a status and a message for the
// person: the rules' own messages, without package prefixes.
func createError(err error) (int, string) {
	msg := err.Error()
	switch {
	case errors.Is(err, errForm):
		return http.StatusUnprocessableEntity, strings.TrimPrefix(msg, errForm.Error()+": ")
	case errors.Is(err, control.ErrUsage):
		return http.StatusUnprocessableEntity, strings.TrimPrefix(msg, control.ErrUsage.Error()+": ")
	case errors.Is(err, control.ErrAdmin), errors.Is(err, control.ErrBlocked):
		return http.StatusForbidden, capitalize(msg)
	case errors.Is(err, control.ErrUnknownUser):
		return http.StatusForbidden, "Your account is not known to Legate's directory, so app passwords cannot be created. Ask your administrator."
	case errors.Is(err, store.ErrLimit), errors.Is(err, store.ErrNameTaken):
		return http.StatusConflict, capitalize(strings.TrimPrefix(msg, "store: "))
	}
	return http.StatusInternalServerError, ""
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func (p *Portal) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	res, err := p.ctl.RevokeAppPasswords(r.Context(), control.RevokeArgs{User: s.User, ID: r.PathValue("id"), Via: "portal"})
	switch {
	case errors.Is(err, store.ErrNotFound):
		p.seeOther(w, r, s, "/", "That app password was already revoked.")
	case err != nil:
		p.fail(w, err)
	default:
		p.reqLog(r).Info("portal: app password revoked", "user", s.User, "id", r.PathValue("id"))
		p.seeOther(w, r, s, "/", revokedNotice(res))
	}
}

func (p *Portal) revokeAll(w http.ResponseWriter, r *http.Request, s *session) {
	res, err := p.ctl.RevokeAppPasswords(r.Context(), control.RevokeArgs{User: s.User, All: true, Via: "portal"})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.fail(w, err)
		return
	}
	p.reqLog(r).Info("portal: all app passwords revoked", "user", s.User, "count", len(res.Revoked))
	p.seeOther(w, r, s, "/", revokedNotice(res))
}

func revokedNotice(res control.Revoked) string {
	var what string
	switch len(res.Revoked) {
	case 0:
		return "There was nothing to revoke."
	case 1:
		what = fmt.Sprintf("Revoked “%s”.", res.Revoked[0].Name)
	default:
		what = fmt.Sprintf("Revoked %d app passwords.", len(res.Revoked))
	}
	switch res.SessionsClosed {
	case 0:
		return what + " Devices using it can no longer sign in."
	case 1:
		return what + " 1 open connection was closed."
	}
	return what + fmt.Sprintf(" %d open connections were closed.", res.SessionsClosed)
}

func (p *Portal) createdView(s *session, c control.Created, st *settings) createdPage {
	d := createdPage{layout: p.layoutFor(s), Name: c.AppPassword.Name, Secret: c.Secret,
		Groups: strings.Split(c.Secret, "-"), UserName: c.AppPassword.User, Expires: "never"}
	d.Title = "Your new app password"
	d.Script = true
	if !c.AppPassword.Expires.IsZero() {
		d.Expires = day(c.AppPassword.Expires)
	}
	d.Settings = clientRows(st.cfg.ClientSettings, c.AppPassword.Scope)
	if ds, ok := p.deviceSetup(s, c, st); ok {
		d.Setup = &ds
	}
	return d
}
