package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"90d", 2160 * time.Hour, false},
		{"1d12h", 36 * time.Hour, false},
		{"1.5d", 36 * time.Hour, false},
		{"60s", time.Minute, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"+10m", 10 * time.Minute, false},
		{"2d3h4m5s", 51*time.Hour + 4*time.Minute + 5*time.Second, false},
		{"", 0, true},
		{"60", 0, true},
		{"-5m", 0, true},
		{"10 minutes", 0, true},
		{"d", 0, true},
		{".d", 0, true},
		{"1w", 0, true},
		{"999999999999d", 0, true},
		{"106751d", 106751 * 24 * time.Hour, false},
		{"106751d23h59m", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDuration(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseDuration(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("90d")); err != nil {
		t.Fatal(err)
	}
	if d.Std() != 2160*time.Hour {
		t.Errorf("got %v, want 2160h", d.Std())
	}
	for _, x := range []struct {
		d    Duration
		want string
	}{
		{d, "90d"},
		{Duration(90 * time.Second), "1m30s"},
		{0, "0s"},
	} {
		if got := x.d.String(); got != x.want {
			t.Errorf("String(%d): got %q, want %q", int64(x.d), got, x.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"8192", 8192, false},
		{"64KiB", 64 << 10, false},
		{"64 KiB", 64 << 10, false},
		{"50MB", 50_000_000, false},
		{"1MiB", 1 << 20, false},
		{"1M", 1 << 20, false},
		{"2G", 2 << 30, false},
		{"10B", 10, false},
		{"", 0, true},
		{"MB", 0, true},
		{"-1", 0, true},
		{"5 parsecs", 0, true},
		{"99999999999999999999", 0, true},
		{"9999999999999GiB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSize(%q): got error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSize(%q): got %d, want %d", tt.in, got, tt.want)
		}
	}
}
