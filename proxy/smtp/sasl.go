package smtp

import (
	"bytes"
	"errors"
)

// saslServer is one server side of a SASL exchange: Next takes the
// client's response (nil when there was no initial response) and returns
// the next challenge, or done with the outcome.
type saslServer interface {
	Next(resp []byte) (challenge []byte, done bool, err error)
}

// errUnexpectedResponse is a response after the exchange ended.
var errUnexpectedResponse = errors.New("smtp: unexpected client response")

// credentialFunc checks authzid (may be empty), user and secret; its error
// is the client's answer.
type credentialFunc func(authzid, user, secret string) error

// maxCredential bounds each of authzid, user and secret (RFC 4616 allows
// 255 octets each; app passwords are far shorter).
const maxCredential = 255

// plainServer is SASL PLAIN (RFC 4616), with or without initial response.
type plainServer struct {
	check credentialFunc
	done  bool
}

func newPlainServer(check credentialFunc) saslServer { return &plainServer{check: check} }

func (p *plainServer) Next(resp []byte) ([]byte, bool, error) {
	if p.done {
		return nil, true, errUnexpectedResponse
	}
	if resp == nil {
		return []byte{}, false, nil // empty challenge: "334 "
	}
	p.done = true
	authzid, user, secret, ok := parsePlain(resp)
	if !ok {
		return nil, true, replyMalformedAuth
	}
	return nil, true, p.check(authzid, user, secret)
}

// parsePlain splits a PLAIN message "authzid NUL authcid NUL passwd".
func parsePlain(b []byte) (authzid, user, secret string, ok bool) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return "", "", "", false
	}
	for _, p := range parts {
		if len(p) > maxCredential {
			return "", "", "", false
		}
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), true
}

// loginServer is the obsolete but ubiquitous LOGIN mechanism
// (draft-murchison-sasl-login): "Username:", then "Password:". An initial
// response is the user name.
type loginServer struct {
	check credentialFunc
	step  int
	user  string
}

func newLoginServer(check credentialFunc) saslServer { return &loginServer{check: check} }

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		if len(resp) == 0 || len(resp) > maxCredential || bytes.IndexByte(resp, 0) >= 0 {
			return nil, true, replyMalformedAuth
		}
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		if len(resp) > maxCredential || bytes.IndexByte(resp, 0) >= 0 {
			return nil, true, replyMalformedAuth
		}
		return nil, true, l.check("", l.user, string(resp))
	}
	return nil, true, errUnexpectedResponse
}
