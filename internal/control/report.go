package control

import (
	"context"
	"slices"
	"time"
)

// ReportArgs selects the period of the legacy-client inventory.
type ReportArgs struct {
	Since time.Duration `json:"since,omitempty"` // zero: the whole audit log
}

// Report is the legacy-client inventory: who still uses basic auth, with
// which clients, from where — what an administrator needs before switching
// legacy authentication off.
type Report struct {
	Rows []ReportRow `json:"rows"`
	// NeverUsed lists app passwords that were never used.
	NeverUsed []ReportUnused `json:"never_used"`
}

// ReportRow aggregates successful logins of one user with one app password.
type ReportRow struct {
	User          string    `json:"user"`
	AppPasswordID string    `json:"app_password_id"`
	Name          string    `json:"name,omitempty"`
	Protocols     []string  `json:"protocols"`
	Clients       []string  `json:"clients"`
	IPs           int       `json:"ips"`
	LastIP        string    `json:"last_ip"`
	FirstSeen     time.Time `json:"first_seen"`
	LastSeen      time.Time `json:"last_seen"`
	Logins        int       `json:"logins"`
	// UpstreamFailures counts logins Legate allowed but the upstream then
	// refused (or could not be reached): audit records action "upstream",
	// outcome "error".
	UpstreamFailures int `json:"upstream_failures"`
}

// ReportUnused is an app password nobody has logged in with.
type ReportUnused struct {
	User          string    `json:"user"`
	AppPasswordID string    `json:"app_password_id"`
	Name          string    `json:"name"`
	Created       time.Time `json:"created"`
}

// Report builds the inventory from the audit log and the store.
func (l *Service) Report(ctx context.Context, a ReportArgs) (Report, error) {
	recs, err := l.Audit(ctx, AuditArgs{Since: a.Since})
	if err != nil {
		return Report{}, err
	}
	type key struct{ user, id string }
	rows := map[key]*ReportRow{}
	ips := map[key]map[string]bool{}
	var order []key
	for _, r := range recs {
		if r.Action == "upstream" && r.Outcome == "error" {
			if row := rows[key{r.User, r.AppPasswordID}]; row != nil {
				row.UpstreamFailures++
			}
			continue
		}
		if r.Action != "login" || r.Outcome != "allow" {
			continue
		}
		k := key{r.User, r.AppPasswordID}
		row := rows[k]
		if row == nil {
			row = &ReportRow{User: r.User, AppPasswordID: r.AppPasswordID, FirstSeen: r.Time}
			rows[k] = row
			ips[k] = map[string]bool{}
			order = append(order, k)
		}
		row.Logins++
		row.LastSeen, row.LastIP = r.Time, r.IP
		ips[k][r.IP] = true
		if r.Protocol != "" && !slices.Contains(row.Protocols, r.Protocol) {
			row.Protocols = append(row.Protocols, r.Protocol)
		}
		if r.Client != "" && !slices.Contains(row.Clients, r.Client) {
			row.Clients = append(row.Clients, r.Client)
		}
	}
	var rep Report
	users, err := l.Store.Users(ctx)
	if err != nil {
		return Report{}, err
	}
	names := map[string]string{}
	for _, u := range users {
		aps, err := l.Store.List(ctx, u)
		if err != nil {
			return Report{}, err
		}
		for _, ap := range aps {
			names[ap.ID] = ap.Name
			if ap.LastUse.Time.IsZero() {
				rep.NeverUsed = append(rep.NeverUsed, ReportUnused{User: ap.User, AppPasswordID: ap.ID, Name: ap.Name, Created: ap.Created})
			}
		}
	}
	for _, k := range order {
		row := rows[k]
		row.IPs = len(ips[k])
		row.Name = names[k.id]
		rep.Rows = append(rep.Rows, *row)
	}
	slices.SortStableFunc(rep.Rows, func(a, b ReportRow) int {
		if a.User != b.User {
			if a.User < b.User {
				return -1
			}
			return 1
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	return rep, nil
}
