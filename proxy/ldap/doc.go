// Package ldap is Legate's LDAP front-end: a message-level proxy (RFC 4511)
// that accepts simple binds with app passwords and forwards the client's
// requests to the upstream directory on the user's behalf.
//
// Messages are read with a bounded reader (the BER length is checked
// against Options.MaxPDUSize before anything is allocated, nesting is
// limited, indefinite lengths are refused) and decoded by one strict
// decoder (decode.go): exact identifiers for every field, ENUMERATED where
// RFC 4511 says so, minimal integers, UTF-8 strings without NUL, RFC 4512
// attribute descriptions and numericoids, no trailing bytes, bind names of
// at most 1 KiB. Anything else ends the connection with a Notice of
// Disconnection carrying protocolError. Every upstream request is encoded
// by Legate from the decoded values (encode.go); client bytes are never
// forwarded. Client controls pass only from an allow-list (controls.go).
//
// Before a successful bind a client may only bind, StartTLS (RFC 4513
// §3, OID 1.3.6.1.4.1.1466.20037), ask WhoAmI (RFC 4532, answered locally),
// unbind, abandon and read the root DSE (Legate's own request with a fixed
// attribute list, run as the service account, at most 4 in flight).
// An anonymous bind succeeds but grants nothing more; a name with an empty
// password is an "unauthenticated bind" and is refused (unwillingToPerform),
// SASL binds get authMethodNotSupported. The bind itself is decided by the
// login service (internal/auth); its outcome maps to the codes of docs/contract.md §4.
//
// After a bind, search and compare (and, with Options.AllowWrites, add,
// modify, delete, modify DN and the password modify extended operation)
// go to a pool of upstream connections bound as the service account
// (upstream.ldap.bind_dn). Connections are multiplexed: each request gets
// a fresh message ID on its upstream connection, and one reader per
// connection routes responses back, streaming search entries as they
// arrive into a per-client queue bounded by Options.MaxQueuedBytes that
// never blocks: a client whose queue overflows (or that stops reading for
// WriteTimeout) is disconnected and its requests are abandoned upstream,
// so no client can delay another. A message ID reused while outstanding
// is a protocol error. Paged
// searches (RFC 2696) stick to one upstream connection per session, since
// cookies belong to the connection that issued them. Abandon is forwarded
// with the upstream's message ID.
//
// Authorization, Options.Authz:
//
//   - "proxied" (default): every request carries a critical Proxied
//     Authorization control (RFC 4370) with "dn:<user DN>", so the
//     directory's own ACLs apply to the user. A client that sends its own
//     proxied-authorization control gets insufficientAccessRights (50):
//     only Legate decides whom a request runs as.
//   - "service": for directories without RFC 4370 (Active Directory).
//     Requests run as the service account, confined to Options.SearchBases
//     (base or entry DNs outside them get insufficientAccessRights), and
//     search entries keep only Options.Attributes. The trade-off: the
//     directory cannot tell users apart, so every user sees what the
//     service account sees inside those bases; per-user ACLs do not apply,
//     and writes and password changes are refused. Filters, Compare,
//     requested attributes and sort keys may only name Attributes
//     (confine.go), so stripped attributes cannot serve as an oracle.
//
// Revocation (session.Registry kill) sends a Notice of Disconnection
// (RFC 4511 §4.4.1, resultCode unavailable) and closes the connection.
package ldap
