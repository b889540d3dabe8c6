package ldap_test

import (
	"testing"

	"github.com/go-ldap/ldap/v3"

	ldapproxy "github.com/legate-proxy/legate/proxy/ldap"
	"github.com/legate-proxy/legate/store"
)

// serviceConn is a StartTLS connection to Legate in service mode (bases
// ou=people, attributes uid, cn, mail, objectClass), bound as alice.
func serviceConn(t *testing.T, mutate func(*ldapproxy.Options)) (*env, *ldap.Conn) {
	t.Helper()
	e := newEnv(t, envOptions{mutate: func(o *ldapproxy.Options) {
		o.Authz = ldapproxy.AuthzService
		o.SearchBases = []string{"ou=people,dc=example,dc=com"}
		o.Attributes = []string{"uid", "cn", "mail", "objectClass"}
		if mutate != nil {
			mutate(o)
		}
	}})
	_, secret, err := e.store.Create(t.Context(), store.CreateRequest{User: "alice", Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	c := dialGoLDAP(t, e.addr)
	if err := c.StartTLS(e.certs.ClientTLS.Clone()); err != nil {
		t.Fatal(err)
	}
	if err := c.Bind("alice", secret); err != nil {
		t.Fatal(err)
	}
	return e, c
}

const people = "ou=people,dc=example,dc=com"

func search(c *ldap.Conn, filter string, attrs []string, ctls ...ldap.Control) (*ldap.SearchResult, error) {
	return c.Search(ldap.NewSearchRequest(people, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, filter, attrs, ctls))
}

// TestServiceModeFilterAttributes (#13.4): a filter naming an attribute
// outside `attributes` — in any branch, as substrings, ordering, approx
// or extensible match, with options or by OID — is refused with 50, so
// hidden attributes (sn here) cannot be used as an oracle.
func TestServiceModeFilterAttributes(t *testing.T) {
	_, c := serviceConn(t, nil)
	refused := []string{
		"(sn=Liddell)", "(SN;lang-en=Liddell)", "(2.5.4.4=Liddell)",
		"(&(uid=*)(sn=Liddell))", "(|(uid=nobody)(sn=Liddell))", "(!(sn=Nobody))",
		"(&(objectClass=*)(|(cn=x)(!(sn=Liddell))))",
		"(sn=Lid*)", "(sn=*dde*)", "(sn>=L)", "(sn<=M)", "(sn~=Liddell)", "(sn=*)",
		"(sn:caseExactMatch:=Liddell)", "(:caseExactMatch:=Liddell)", "(uid:dn:=people)",
	}
	for _, f := range refused {
		res, err := search(c, f, []string{"uid"})
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			n := 0
			if res != nil {
				n = len(res.Entries)
			}
			t.Errorf("filter %s: got %v with %d entries, want insufficientAccessRights (50)", f, err, n)
		}
	}
	res, err := search(c, "(&(objectClass=inetOrgPerson)(UID=alice)(cn=Alice*))", []string{"uid", "mail"})
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("uid") != "alice" {
		t.Errorf("allowed filter: got %v %v, want alice's entry", res, err)
	}
}

// TestServiceModeCompareAttribute (#13.4): Compare on an attribute outside
// `attributes` is refused (no true/false oracle as the service account).
func TestServiceModeCompareAttribute(t *testing.T) {
	_, c := serviceConn(t, nil)
	for _, attr := range []string{"sn", "SN", "sn;lang-en", "2.5.4.4", "telephoneNumber"} {
		if _, err := c.Compare("uid=alice,"+people, attr, "Liddell"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			t.Errorf("compare %s: got %v, want insufficientAccessRights (50)", attr, err)
		}
	}
	if ok, err := c.Compare("uid=alice,"+people, "CN", "Alice Liddell"); err != nil || !ok {
		t.Errorf("compare cn: got %v %v, want true", ok, err)
	}
}

// TestServiceModeRequestedAttributes (#13.4): a requested attribute list
// naming attributes outside `attributes` is refused; "*", "+" and "1.1"
// are fine (the entries are stripped anyway).
func TestServiceModeRequestedAttributes(t *testing.T) {
	_, c := serviceConn(t, nil)
	for _, attrs := range [][]string{{"sn"}, {"cn", "sn"}, {"2.5.4.4"}, {"@inetOrgPerson"}} {
		if _, err := search(c, "(uid=alice)", attrs); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
			t.Errorf("attributes %v: got %v, want insufficientAccessRights (50)", attrs, err)
		}
	}
	for _, attrs := range [][]string{{"*"}, {"+"}, {"1.1"}, {"cn;lang-en", "MAIL"}, nil} {
		res, err := search(c, "(uid=alice)", attrs)
		if err != nil || len(res.Entries) != 1 {
			t.Errorf("attributes %v: got %v, want alice's entry", attrs, err)
			continue
		}
		for _, a := range res.Entries[0].Attributes {
			switch a.Name {
			case "uid", "cn", "mail", "objectClass":
			default:
				t.Errorf("attributes %v: got attribute %s, want only uid, cn, mail, objectClass", attrs, a.Name)
			}
		}
	}
}

// TestServiceModeSortKeys (#13.4): sorting by a hidden attribute reveals
// its order: refused.
func TestServiceModeSortKeys(t *testing.T) {
	_, c := serviceConn(t, nil)
	sortBy := func(attr string) ldap.Control {
		return ldap.NewControlServerSideSortingWithSortKeys([]*ldap.SortKey{{AttributeType: attr}})
	}
	if _, err := search(c, "(uid=*)", []string{"uid"}, sortBy("sn")); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("sort by sn: got %v, want insufficientAccessRights (50)", err)
	}
}

// TestServiceModeClientControls (#13.2, #13.4): controls off the allow-list
// never reach slapd under the service identity: critical ones get
// unavailableCriticalExtension (12), others are dropped.
func TestServiceModeClientControls(t *testing.T) {
	_, c := serviceConn(t, nil)
	_, err := search(c, "(uid=alice)", []string{"uid"}, ldap.NewControlManageDsaIT(true))
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnavailableCriticalExtension) {
		t.Errorf("critical ManageDsaIT: got %v, want unavailableCriticalExtension (12)", err)
	}
	res, err := search(c, "(uid=alice)", []string{"uid"}, ldap.NewControlString("1.3.6.1.4.1.4203.666.5.12", false, ""))
	if err != nil || len(res.Entries) != 1 {
		t.Errorf("non-critical Relax: got %v, want the search to run without it", err)
	}
	res, err = c.SearchWithPaging(ldap.NewSearchRequest(people, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(objectClass=inetOrgPerson)", []string{"uid"}, nil), 1)
	if err != nil || len(res.Entries) < 3 {
		t.Errorf("paged search: got %v, %d entries, want every person", err, len(res.Entries))
	}
}

// TestServiceModeRefusesWrites (#13.4): even when Options.AllowWrites is
// set (legate check refuses that combination), service mode forwards no
// write.
func TestServiceModeRefusesWrites(t *testing.T) {
	_, c := serviceConn(t, func(o *ldapproxy.Options) { o.AllowWrites = true })
	mod := ldap.NewModifyRequest("uid=alice,"+people, nil)
	mod.Replace("mail", []string{"evil@example.com"})
	if err := c.Modify(mod); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Errorf("modify in service mode: got %v, want unwillingToPerform (53)", err)
	}
}
