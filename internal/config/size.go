package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a byte count, written as an integer or with a unit: KB, MB, GB
// (powers of 1000) or K, M, G, KiB, MiB, GiB (powers of 1024); "B" is bytes.
// Spaces between number and unit are allowed ("64 MiB").
type Size int64

// Int64 returns s as an int64.
func (s Size) Int64() int64 { return int64(s) }

// ParseSize parses a non-negative byte count such as "8192", "50MB" or "1 MiB".
func ParseSize(s string) (Size, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && in[i] >= '0' && in[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 8192, 64KiB, 50MB)", s)
	}
	n, err := strconv.ParseInt(in[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: size too large", s)
	}
	var mult int64
	switch strings.TrimSpace(in[i:]) {
	case "", "B":
		mult = 1
	case "KB", "kB":
		mult = 1000
	case "MB":
		mult = 1000 * 1000
	case "GB":
		mult = 1000 * 1000 * 1000
	case "K", "k", "KiB":
		mult = 1 << 10
	case "M", "MiB":
		mult = 1 << 20
	case "G", "GiB":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("%q is not a size (units: B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q: size too large", s)
	}
	return Size(n * mult), nil
}
