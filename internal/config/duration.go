package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in Go syntax ("90s", "1h30m") or with
// a day unit ("90d", "1d12h"). Negative durations are refused.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration, using days for whole days ("90d").
func (d Duration) String() string {
	const day = 24 * time.Hour
	td := time.Duration(d)
	if td >= day && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	return td.String()
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ParseDuration parses a non-negative duration in Go syntax, also accepting
// "d" for 24-hour days, alone or mixed with other units ("90d", "1d12h",
// "1.5d"). A bare "0" is zero.
func ParseDuration(s string) (time.Duration, error) {
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("%q is not a duration (use e.g. 30s, 10m, 12h, 90d)", s)
	}
	in := strings.TrimPrefix(strings.TrimSpace(s), "+")
	if in == "" || strings.HasPrefix(in, "-") {
		if strings.HasPrefix(in, "-") {
			return 0, fmt.Errorf("%q: a duration must not be negative", s)
		}
		return bad()
	}
	const maxDays = float64(math.MaxInt64) / float64(24*time.Hour)
	var days float64
	var rest strings.Builder
	for in != "" {
		i := 0
		for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.') {
			i++
		}
		if i == 0 {
			return bad()
		}
		num := in[:i]
		in = in[i:]
		j := 0
		for j < len(in) && !(in[j] >= '0' && in[j] <= '9' || in[j] == '.') {
			j++
		}
		unit := in[:j]
		in = in[j:]
		if unit != "d" {
			rest.WriteString(num)
			rest.WriteString(unit)
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return bad()
		}
		days += f
		if days >= maxDays {
			return 0, fmt.Errorf("%q: duration too large", s)
		}
	}
	total := time.Duration(days * float64(24*time.Hour))
	if rest.Len() > 0 {
		d, err := time.ParseDuration(rest.String())
		if err != nil {
			return bad()
		}
		if d > math.MaxInt64-total {
			return 0, fmt.Errorf("%q: duration too large", s)
		}
		total += d
	}
	return total, nil
}
