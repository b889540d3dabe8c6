package oauth

import (
	"strconv"
)

// SASL mechanisms for tokens.
const (
	MechXOAUTH2     = "XOAUTH2"     // Google's and Microsoft's
	MechOAUTHBEARER = "OAUTHBEARER" // RFC 7628
)

// InitialResponse returns the client's first SASL message (not yet base64
// encoded) for mech, logging in as user with token. host and port name the
// upstream for OAUTHBEARER's kvpairs. The caller has checked that user has
// no ',' '=' or control characters (ValidUser).
func InitialResponse(mech, user, token, host string, port int) []byte {
	if mech == MechOAUTHBEARER {
		// RFC 7628 §3.1: gs2-header "n,a=user," then kvpairs.
		b := []byte("n,a=" + user + ",\x01")
		if host != "" {
			b = append(b, "host="+host+"\x01"...)
		}
		if port > 0 {
			b = append(b, "port="+strconv.Itoa(port)+"\x01"...)
		}
		b = append(b, "auth=Bearer "+token+"\x01\x01"...)
		return b
	}
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// ValidUser reports whether user can be carried in either mechanism's
// message unambiguously: printable, no ',' (a GS2 separator), no '='
// (would need escaping), no control characters.
func ValidUser(user string) bool {
	if user == "" || len(user) > 320 {
		return false
	}
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c <= 0x20 || c == 0x7f || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
