package smtp

import (
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The envelope: MAIL FROM and RCPT TO are decoded strictly (RFC 5321
// §4.1.2, RFC 6531 for UTF-8) and encoded again for the upstream; nothing
// the client wrote is forwarded as it came. A quoted local part is
// re-quoted: `"a b"@example.com` goes upstream quoted, `"alice"@example.com`
// as alice@example.com, so no client can smuggle parameters or a second
// address inside one. Parameters are an allow-list, each decoded and
// re-encoded: MAIL SIZE, BODY (7BIT, 8BITMIME), SMTPUTF8, RET, ENVID (and
// AUTH=, accepted and dropped: RFC 4954 §5 lets the upstream trust it only
// from a trusted client); RCPT NOTIFY and ORCPT. Anything else is refused
// with 555 5.5.4.

// Limits of RFC 5321 §4.5.3.1.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 256
	maxEnvid     = 100
	maxOrcpt     = 500
)

// mailbox is a decoded envelope address. domain is empty only for the
// <postmaster> recipient.
type mailbox struct{ local, domain string }

// String is the address in its canonical form: the local part as a
// Dot-string when it is one, else as a quoted string.
func (m mailbox) String() string {
	l := m.local
	if !isDotStringUTF8(l, true) { // UTF-8 only got in with SMTPUTF8
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(l); i++ {
			if l[i] == '"' || l[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(l[i])
		}
		b.WriteByte('"')
		l = b.String()
	}
	if m.domain == "" {
		return l
	}
	return l + "@" + m.domain
}

// mailParams are the decoded MAIL parameters.
type mailParams struct {
	size     int64 // 0: not given
	body     string
	utf8     bool
	ret      string
	envid    string // decoded
	hasEnvid bool
}

// rcptParams are the decoded RCPT parameters.
type rcptParams struct {
	notify    []string
	orcptType string // "" when not given
	orcpt     string // decoded
}

// envelopeError is a refused MAIL or RCPT argument.
func envelopeError(code int, enh, text string) *reply { return newReply(code, enh, text) }

var (
	replyBadPath  = envelopeError(501, "5.1.7", "Bad address syntax")
	replyBadParam = envelopeError(501, "5.5.4", "Bad parameter syntax")
	replyDupParam = envelopeError(501, "5.5.4", "Parameter given twice")
)

// parsePath decodes "<path>" at the start of s (after "FROM:" or "TO:"),
// returning the mailbox, whether it is the null path <>, and the rest.
func parsePath(s string, allowUTF8, allowPostmaster bool) (mb mailbox, null bool, rest string, r *reply) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "<") {
		return mb, false, "", replyBadPath
	}
	s = s[1:]
	if strings.HasPrefix(s, ">") {
		return mb, true, s[1:], nil
	}
	// A source route (RFC 5321 §4.1.2 "A-d-l") is accepted and dropped.
	if strings.HasPrefix(s, "@") {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return mb, false, "", replyBadPath
		}
		for _, hop := range strings.Split(s[:i], ",") {
			if !strings.HasPrefix(hop, "@") || !validDomain(hop[1:], allowUTF8) {
				return mb, false, "", replyBadPath
			}
		}
		s = s[i+1:]
	}
	start := len(s)
	var local string
	if strings.HasPrefix(s, "\"") {
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			c := s[i]
			if c == '\\' {
				i++
				if i == len(s) || s[i] < 32 || s[i] > 126 {
					return mb, false, "", replyBadPath
				}
				c = s[i]
			} else if !qtext(c, allowUTF8) {
				return mb, false, "", replyBadPath
			}
			b.WriteByte(c)
		}
		if i == len(s) {
			return mb, false, "", replyBadPath
		}
		local, s = b.String(), s[i+1:]
	} else {
		i := strings.IndexAny(s, "@>")
		if i < 0 {
			return mb, false, "", replyBadPath
		}
		local, s = s[:i], s[i:]
		if !isDotStringUTF8(local, allowUTF8) {
			return mb, false, "", replyBadPath
		}
	}
	if local == "" || len(local) > maxLocalPart || allowUTF8 && !utf8.ValidString(local) {
		return mb, false, "", replyBadPath
	}
	mb.local = local
	if strings.HasPrefix(s, ">") {
		if !allowPostmaster || !strings.EqualFold(local, "postmaster") {
			return mb, false, "", replyBadPath
		}
		return mb, false, s[1:], nil
	}
	if !strings.HasPrefix(s, "@") {
		return mb, false, "", replyBadPath
	}
	s = s[1:]
	i := strings.IndexByte(s, '>')
	if i < 0 || !validDomain(s[:i], allowUTF8) {
		return mb, false, "", replyBadPath
	}
	mb.domain, s = s[:i], s[i+1:]
	if start-len(s) > maxPath {
		return mb, false, "", replyBadPath
	}
	return mb, false, s, nil
}

// qtext reports whether c may stand unescaped in a quoted local part
// (qtextSMTP, RFC 5321 §4.1.2; UTF-8 octets with SMTPUTF8).
func qtext(c byte, allowUTF8 bool) bool {
	return c >= 32 && c <= 126 && c != '"' && c != '\\' || allowUTF8 && c >= 0x80
}

// atext reports whether c is an atext character (RFC 5322 §3.2.3).
func atext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isDotStringUTF8 reports whether s is a Dot-string (atoms joined by dots),
// with UTF-8 octets when allowUTF8.
func isDotStringUTF8(s string, allowUTF8 bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !atext(c) && !(allowUTF8 && c >= 0x80) {
			return false
		}
	}
	return true
}

// validDomain checks a Domain or an address literal (RFC 5321 §4.1.2,
// §4.1.3); with allowUTF8, U-labels (RFC 6531).
func validDomain(d string, allowUTF8 bool) bool {
	if d == "" || len(d) > maxDomain {
		return false
	}
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return false
		}
		lit := d[1 : len(d)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6() && a.Zone() == ""
		}
		a, err := netip.ParseAddr(lit)
		return err == nil && a.Is4()
	}
	if allowUTF8 && !utf8.ValidString(d) {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || allowUTF8 && c >= 0x80
			if !ok {
				return false
			}
		}
	}
	return true
}

// param is one "KEY[=VALUE]" of MAIL or RCPT, the key upper-cased.
type param struct {
	key, value string
	hasValue   bool
}

// parseParams splits the parameters after a path (RFC 5321 §4.1.2
// esmtp-param), strictly.
func parseParams(s string, allowUTF8 bool) ([]param, *reply) {
	if s == "" {
		return nil, nil
	}
	if s[0] != ' ' {
		return nil, replyBadPath
	}
	var ps []param
	for _, f := range strings.Fields(s) {
		k, v, has := strings.Cut(f, "=")
		if k == "" || has && v == "" {
			return nil, replyBadParam
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || i > 0 && c == '-') {
				return nil, replyBadParam
			}
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c == '=' || c < 33 || c == 127 || c > 127 && !allowUTF8 {
				return nil, replyBadParam
			}
		}
		k = strings.ToUpper(k)
		for _, p := range ps {
			if p.key == k {
				return nil, replyDupParam
			}
		}
		ps = append(ps, param{key: k, value: v, hasValue: has})
		if len(ps) > 10 {
			return nil, replyBadParam
		}
	}
	return ps, nil
}

func unsupportedParam(k string) *reply {
	return envelopeError(555, "5.5.4", "Unsupported parameter "+k)
}

// parseMail decodes the argument of MAIL after "FROM:".
func parseMail(arg string, maxSize int64) (from mailbox, null bool, p mailParams, r *reply) {
	// SMTPUTF8 among the parameters allows UTF-8 in the path: look first.
	_, after, _ := strings.Cut(arg, ">")
	utf8Param := false
	for _, f := range strings.Fields(after) {
		if strings.EqualFold(f, "SMTPUTF8") {
			utf8Param = true
		}
	}
	from, null, rest, r := parsePath(arg, utf8Param, false)
	if r != nil {
		return from, null, p, r
	}
	ps, r := parseParams(rest, utf8Param)
	if r != nil {
		return from, null, p, r
	}
	for _, q := range ps {
		switch q.key {
		case "SIZE":
			n, err := strconv.ParseInt(q.value, 10, 64)
			if err != nil || n < 0 || len(q.value) > 20 {
				return from, null, p, replyBadParam
			}
			if n > maxSize {
				return from, null, p, envelopeError(552, "5.3.4", "Message size exceeds fixed limit")
			}
			p.size = n
		case "BODY":
			switch v := strings.ToUpper(q.value); v {
			case "7BIT", "8BITMIME":
				p.body = v
			default:
				return from, null, p, envelopeError(555, "5.5.4", "Unsupported BODY type")
			}
		case "SMTPUTF8":
			if q.hasValue {
				return from, null, p, replyBadParam
			}
			p.utf8 = true
		case "RET":
			switch v := strings.ToUpper(q.value); v {
			case "FULL", "HDRS":
				p.ret = v
			default:
				return from, null, p, replyBadParam
			}
		case "ENVID":
			v, ok := xtextDecode(q.value)
			if !ok || len(v) > maxEnvid || !printableASCII(v) {
				return from, null, p, replyBadParam
			}
			p.envid, p.hasEnvid = v, true
		case "AUTH":
			if _, ok := xtextDecode(q.value); !ok {
				return from, null, p, replyBadParam
			}
		default:
			return from, null, p, unsupportedParam(q.key)
		}
	}
	return from, null, p, nil
}

// parseRcpt decodes the argument of RCPT after "TO:".
func parseRcpt(arg string, allowUTF8 bool) (to mailbox, p rcptParams, r *reply) {
	to, null, rest, r := parsePath(arg, allowUTF8, true)
	if r != nil {
		return to, p, r
	}
	if null {
		return to, p, replyBadPath
	}
	ps, r := parseParams(rest, allowUTF8)
	if r != nil {
		return to, p, r
	}
	for _, q := range ps {
		switch q.key {
		case "NOTIFY":
			seen := map[string]bool{}
			for _, n := range strings.Split(strings.ToUpper(q.value), ",") {
				switch n {
				case "NEVER", "SUCCESS", "FAILURE", "DELAY":
				default:
					return to, p, replyBadParam
				}
				if seen[n] {
					return to, p, replyBadParam
				}
				seen[n] = true
				p.notify = append(p.notify, n)
			}
			if seen["NEVER"] && len(p.notify) > 1 {
				return to, p, replyBadParam
			}
		case "ORCPT":
			typ, v, ok := strings.Cut(q.value, ";")
			if !ok || typ == "" || len(q.value) > maxOrcpt {
				return to, p, replyBadParam
			}
			for i := 0; i < len(typ); i++ {
				if c := typ[i]; !atext(c) || c == '+' || c == '=' {
					return to, p, replyBadParam
				}
			}
			var dec string
			if strings.EqualFold(typ, "utf-8") {
				dec, ok = utf8AddrDecode(v)
			} else {
				dec, ok = xtextDecode(v)
				ok = ok && printableASCII(dec)
			}
			if !ok || dec == "" {
				return to, p, replyBadParam
			}
			p.orcptType, p.orcpt = typ, dec
		default:
			return to, p, unsupportedParam(q.key)
		}
	}
	return to, p, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] > 126 {
			return false
		}
	}
	return true
}

// xtextDecode decodes RFC 3461 §4 xtext ("+HH" escapes).
func xtextDecode(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", false
			}
			b.WriteByte(byte(v))
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// xtextEncode encodes s as xtext.
func xtextEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// utf8AddrDecode decodes RFC 6533 utf-8-addr-xtext / utf-8-addr-unitext:
// QCHARs, raw UTF-8 and "\x{HEX}" escapes.
func utf8AddrDecode(s string) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			rest, ok := strings.CutPrefix(s[i:], `\x{`)
			j := strings.IndexByte(rest, '}')
			if !ok || j < 1 || j > 6 {
				return "", false
			}
			v, err := strconv.ParseUint(rest[:j], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", false
			}
			b.WriteRune(rune(v))
			i += 3 + j + 1
		case c >= 0x80:
			r, n := utf8.DecodeRuneInString(s[i:])
			b.WriteRune(r)
			i += n
		case c < 33 || c > 126 || c == '+' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), true
}

// utf8AddrEncode encodes s as utf-8-addr-xtext: QCHARs as they are,
// everything else as "\x{HEX}".
func utf8AddrEncode(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 33 && r <= 126 && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		b.WriteString(`\x{` + strings.ToUpper(strconv.FormatInt(int64(r), 16)) + `}`)
	}
	return b.String()
}

// mailCommand is the MAIL command for the upstream, with the parameters
// its extensions (ext) support.
func mailCommand(from mailbox, null bool, p mailParams, ext map[string]string) string {
	var b strings.Builder
	b.WriteString("MAIL FROM:<")
	if !null {
		b.WriteString(from.String())
	}
	b.WriteByte('>')
	if _, ok := ext["SIZE"]; ok && p.size > 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(p.size, 10))
	}
	if _, ok := ext["8BITMIME"]; ok && p.body != "" {
		b.WriteString(" BODY=" + p.body)
	}
	if p.utf8 {
		b.WriteString(" SMTPUTF8")
	}
	if _, ok := ext["DSN"]; ok {
		if p.ret != "" {
			b.WriteString(" RET=" + p.ret)
		}
		if p.hasEnvid {
			b.WriteString(" ENVID=" + xtextEncode(p.envid))
		}
	}
	return b.String()
}

// rcptCommand is the RCPT command for the upstream.
func rcptCommand(to mailbox, p rcptParams, ext map[string]string) string {
	var b strings.Builder
	b.WriteString("RCPT TO:<" + to.String() + ">")
	if _, ok := ext["DSN"]; ok {
		if len(p.notify) > 0 {
			b.WriteString(" NOTIFY=" + strings.Join(p.notify, ","))
		}
		if p.orcptType != "" {
			if strings.EqualFold(p.orcptType, "utf-8") {
				b.WriteString(" ORCPT=utf-8;" + utf8AddrEncode(p.orcpt))
			} else {
				b.WriteString(" ORCPT=" + p.orcptType + ";" + xtextEncode(p.orcpt))
			}
		}
	}
	return b.String()
}
