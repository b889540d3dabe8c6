package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds the size of a configuration file.
const MaxFileSize = 4 << 20

// Load reads, decodes, defaults and validates the file at path. Relative
// paths inside it resolve against the file's directory. On any problem the
// error is an Errors listing all of them, each with path:line.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse decodes, defaults and validates data as if read from the file name.
// Relative paths resolve against name's directory (made absolute).
func Parse(name string, data []byte) (*Config, error) {
	fail := func(line int, msg string) (*Config, error) {
		return nil, Errors{{File: name, Line: line, Msg: msg}}
	}
	if len(data) > MaxFileSize {
		return fail(0, fmt.Sprintf("file larger than %d bytes", MaxFileSize))
	}
	root, err := parseYAML(data)
	if err != nil {
		line, msg := yamlErrorLine(err), "invalid YAML: "+yamlErrorText(err)
		if hasTab(data, line) {
			msg += " (indent with spaces: YAML does not allow tabs)"
		}
		return fail(line, msg)
	}

	c := Default()
	c.file = name
	d := &decoder{file: name, lines: make(map[string]int), bad: make(map[string]bool)}
	if root != nil {
		d.decode(root, "", reflect.ValueOf(c).Elem())
	}
	if d.nodes > maxNodes {
		return fail(0, fmt.Sprintf("document too large or too deeply aliased (more than %d values)", maxNodes))
	}
	c.lines, c.bad = d.lines, d.bad

	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		return fail(0, fmt.Sprintf("cannot resolve directory: %v", err))
	}
	c.derive(dir)

	errs := d.errs
	var verrs Errors
	if err := c.Validate(); errors.As(err, &verrs) {
		errs = append(errs, verrs...)
	}
	if len(errs) > 0 {
		return nil, errs.sorted()
	}
	return c, nil
}

// parseYAML returns the root node of the single document in data (nil for
// an empty file). yaml panics, should it have any, become errors.
func parseYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("yaml: line %d: only one document is allowed", next.Line)
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return nil, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

func yamlErrorLine(err error) int {
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil || m[1] == "" {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func yamlErrorText(err error) string {
	return yamlLineRE.ReplaceAllString(err.Error(), "")
}

// hasTab reports whether line (1-based) of data starts its indentation with a tab.
func hasTab(data []byte, line int) bool {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return false
	}
	l := lines[line-1]
	return len(bytes.TrimLeft(l, " \t")) < len(l) && bytes.ContainsRune(l[:len(l)-len(bytes.TrimLeft(l, " \t"))], '\t')
}

// set reports whether key was given in the file.
func (c *Config) set(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// derive fills defaults that depend on other keys, and resolves relative
// paths against dir.
func (c *Config) derive(dir string) {
	c.deriveOAuth2("upstream.imap", &c.Upstream.IMAP)
	c.deriveOAuth2("upstream.smtp", &c.Upstream.SMTP)
	for _, p := range c.paths() {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	dbDir := filepath.Dir(c.Storage.Path)
	if !c.set("storage.key_file") {
		c.Storage.KeyFile = filepath.Join(dbDir, "hmac.key")
	}
	if !c.set("portal.session_key_file") {
		c.Portal.SessionKeyFile = filepath.Join(dbDir, "portal.key")
	}
}

// paths lists every key that holds a file system path.
func (c *Config) paths() []*string {
	return append([]*string{
		&c.Listen.Admin, &c.Listen.Decision, &c.AuthHTTP.SecretFile,
		&c.TLS.CertFile, &c.TLS.KeyFile,
		&c.Storage.Path, &c.Storage.KeyFile,
		&c.Storage.Etcd.TLS.CAFile, &c.Storage.Etcd.TLS.CertFile, &c.Storage.Etcd.TLS.KeyFile,
		&c.Storage.Etcd.PasswordFile,
		&c.Upstream.IMAP.CAFile, &c.Upstream.IMAP.MasterPasswordFile,
		&c.Upstream.SMTP.CAFile, &c.Upstream.SMTP.MasterPasswordFile,
		&c.Upstream.LDAP.CAFile, &c.Upstream.LDAP.BindPasswordFile,
		&c.Portal.SessionKeyFile, &c.Portal.OIDC.ClientSecretFile,
	}, append(c.Upstream.IMAP.OAuth2.paths(), c.Upstream.SMTP.OAuth2.paths()...)...)
}
