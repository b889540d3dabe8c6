package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/legate-proxy/legate/internal/testenv"
)

// section is the result of one protocol: one or more markdown tables.
type section struct {
	Title  string
	Tables []table
	Notes  []string
	// Values are every measured number, for the smoke test.
	Values map[string]float64
}

// table is one markdown table.
type table struct {
	Header []string
	Rows   [][]string
}

func newSection(title string) *section {
	return &section{Title: title, Values: map[string]float64{}}
}

// add appends a table and returns it for its rows.
func (s *section) add(header ...string) *table {
	s.Tables = append(s.Tables, table{Header: header})
	return &s.Tables[len(s.Tables)-1]
}

func (t *table) row(cells ...string) { t.Rows = append(t.Rows, cells) }

// record keeps a measured value under a name for the smoke test and
// returns it.
func (s *section) record(name string, v float64) float64 {
	s.Values[name] = v
	return v
}

func (s *section) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## %s\n", s.Title)
	for _, t := range s.Tables {
		b.WriteString("\n| " + strings.Join(t.Header, " | ") + " |\n|")
		for range t.Header {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, r := range t.Rows {
			b.WriteString("| " + strings.Join(r, " | ") + " |\n")
		}
	}
	if len(s.Notes) > 0 {
		b.WriteString("\n")
		for _, n := range s.Notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// verdict is PASS or MISS.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "**MISS**"
}

// atLeast formats ratio = got/ref against a minimum.
func atLeast(got, ref, min float64) (ratio, target, result string) {
	r := 0.0
	if ref > 0 {
		r = got / ref
	}
	return fmt.Sprintf("%.2f", r), fmt.Sprintf("≥ %.2f", min), verdict(r >= min)
}

// rate formats an operations-per-second number.
func rate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// kib formats bytes as KiB with one decimal.
func kib(v float64) string { return fmt.Sprintf("%.1f KiB", v/1024) }

// mib formats bytes as MiB with one decimal.
func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }

// bytesize formats bytes as KiB below 1 MiB, else as MiB.
func bytesize(v float64) string {
	if v > -(1<<20) && v < 1<<20 {
		return kib(v)
	}
	return mib(v)
}

// machineHeader describes the run: date, machine, versions, settings.
func machineHeader(o options, protos string) string {
	var b strings.Builder
	b.WriteString("# legate-bench\n\n")
	fmt.Fprintf(&b, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- machine: %d CPUs (%s), %s/%s, kernel %s, load average at start %s\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, readTrim("/proc/sys/kernel/osrelease"),
		loadAvg())
	fmt.Fprintf(&b, "- Go: %s; upstreams: %s\n", runtime.Version(), upstreamVersions(protos))
	fmt.Fprintf(&b, "- settings: -duration %v -sessions %d -idle %d -only %s\n", o.Duration, o.Sessions, o.Idle, protos)
	b.WriteString("- everything (upstreams, Legate, relay, load generator) runs on this machine over loopback\n")
	return b.String()
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// upstreamVersions asks the server binaries for their versions.
func upstreamVersions(protos string) string {
	var vs []string
	if strings.Contains(protos, "imap") || strings.Contains(protos, "smtp") {
		vs = append(vs, "Dovecot "+command("dovecot", "--version"))
	}
	if strings.Contains(protos, "ldap") {
		v := command("slapd", "-VV")
		if i := strings.Index(v, "slapd "); i >= 0 {
			v = strings.Fields(v[i:])[1]
		}
		vs = append(vs, "OpenLDAP slapd "+v)
	}
	return strings.Join(vs, ", ")
}

func command(name string, args ...string) string {
	bin, err := testenv.LookPath(name)
	if err != nil {
		return "not installed"
	}
	out, _ := exec.Command(bin, args...).CombinedOutput()
	if s := strings.TrimSpace(string(out)); s != "" {
		return strings.SplitN(s, "\n", 2)[0]
	}
	return "unknown"
}
