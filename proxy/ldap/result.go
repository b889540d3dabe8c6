package ldap

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// LDAP result codes used by the front-end (RFC 4511 §4.1.9).
const (
	resultSuccess                 = 0
	resultOperationsError         = 1
	resultProtocolError           = 2
	resultConfidentialityRequired = 13
	resultAuthMethodNotSupported  = 7
	resultInvalidCredentials      = 49
	resultInsufficientAccess      = 50
	resultBusy                    = 51
	resultUnavailable             = 52
	resultUnwillingToPerform      = 53
)

// OIDs of the extended operations and controls the front-end knows.
const (
	oidStartTLS       = "1.3.6.1.4.1.1466.20037"
	oidNoticeOfDiscon = "1.3.6.1.4.1.1466.20036"
	oidWhoAmI         = "1.3.6.1.4.1.4203.1.11.3"
	oidPasswordModify = "1.3.6.1.4.1.4203.1.11.1"
	oidProxiedAuthz   = "2.16.840.1.113730.3.4.18"
	oidProxiedAuthzV1 = "2.16.840.1.113730.3.4.12"
	oidPagedResults   = "1.2.840.113556.1.4.319"
)

// resultOp encodes an LDAPResult-shaped protocolOp with the given
// application tag, plus optional extra children (extended responses).
func resultOp(tag, code int, diag string, extra ...*ber.Packet) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ber.Tag(tag), nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), ""))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, ""))
	for _, e := range extra {
		p.AppendChild(e)
	}
	return p.Bytes()
}

// resultMessage is a complete response message.
func resultMessage(id int64, tag, code int, diag string) []byte {
	return envelope(id, resultOp(tag, code, diag))
}

// extendedResponse is an ExtendedResponse with optional responseName [10]
// and responseValue [11].
func extendedResponse(id int64, code int, diag, name string, value *string) []byte {
	var extra []*ber.Packet
	if name != "" {
		extra = append(extra, ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, name, ""))
	}
	if value != nil {
		extra = append(extra, ber.NewString(ber.ClassContext, ber.TypePrimitive, 11, *value, ""))
	}
	return envelope(id, resultOp(tagExtendedResponse, code, diag, extra...))
}

// noticeOfDisconnection is the unsolicited notification of RFC 4511 §4.4.1.
func noticeOfDisconnection(code int, diag string) []byte {
	return extendedResponse(0, code, diag, oidNoticeOfDiscon, nil)
}

// proxiedAuthzControl is a critical RFC 4370 control naming authzID.
func proxiedAuthzControl(authzID string) []byte {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, oidProxiedAuthz, ""))
	p.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, ""))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, authzID, ""))
	return p.Bytes()
}

// bindRequestOp encodes a simple BindRequest (for the pool's own binds).
func bindRequestOp(dn, password string) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tagBindRequest, nil, "")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(3), ""))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
	p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, ""))
	return p.Bytes()
}

// extendedRequestOp encodes an ExtendedRequest without a value.
func extendedRequestOp(oid string) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tagExtendedRequest, nil, "")
	p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oid, ""))
	return p.Bytes()
}

// abandonOp encodes an AbandonRequest for message id.
func abandonOp(id int64) []byte {
	b := appendInt(nil, id)
	b[0] = 0x40 | tagAbandonRequest // [APPLICATION 16] INTEGER, primitive
	return b
}

// resultCode reads the resultCode and diagnostic of an LDAPResult-shaped
// protocolOp.
func resultCode(op []byte) (code int, diag string, err error) {
	_, body, _, _, err := tlv(op)
	if err != nil {
		return 0, "", err
	}
	id, v, _, rest, err := tlv(body)
	if err != nil || id != 0x0a || len(v) == 0 || len(v) > 4 {
		return 0, "", ErrProtocol
	}
	for _, c := range v {
		code = code<<8 | int(c)
	}
	if _, _, _, rest, err = tlv(rest); err == nil { // matchedDN
		if _, d, _, _, err := tlv(rest); err == nil {
			diag = string(d)
		}
	}
	return code, diag, nil
}
