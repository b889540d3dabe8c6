package lint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// listed is what `go list -export -deps -json` says about one package.
type listed struct {
	ImportPath string
	Dir        string
	Export     string
	GoFiles    []string
	Standard   bool
	Module     *struct{ Path string }
}

// loadModule type-checks every non-test package of the module that holds
// pattern and calls fn for each.
func loadModule(t *testing.T, fn func(fset *token.FileSet, files []*ast.File, info *types.Info, path string)) {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-export", "-deps",
		"-json=ImportPath,Dir,Export,GoFiles,Standard,Module", "github.com/legate-proxy/legate/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	exports := map[string]string{}
	var own []listed
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		exports[p.ImportPath] = p.Export
		if p.Module != nil && p.Module.Path == "github.com/legate-proxy/legate" {
			own = append(own, p)
		}
	}
	if len(own) < 10 {
		t.Fatalf("go list found only %d packages of the module", len(own))
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		f := exports[path]
		if f == "" {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(f)
	})
	for _, p := range own {
		var files []*ast.File
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}, Defs: map[*ast.Ident]types.Object{}}
		conf := types.Config{Importer: imp}
		if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
			t.Fatalf("type-check %s: %v", p.ImportPath, err)
		}
		fn(fset, files, info, p.ImportPath)
	}
}

// TestNoTypedNilInInterface flags return statements that may put a nil
// concrete pointer into an interface result on an error path.
//
// The heuristic, per return statement of a function with an interface
// result:
//   - it is an error path when the function's last result is `error` and
//     the returned error is not the literal nil (or the statement forwards a
//     call's results: `return f()`);
//   - on an error path, an interface result must get the literal nil, an
//     interface value, or a value that cannot be nil: a composite literal,
//     &T{...}, new(T), make(...) or a function literal;
//   - a concrete pointer, map, slice, chan or func given any other way (a
//     variable, a call, a field) is flagged: it may be a typed nil;
//   - the error result itself is flagged only when it is a local variable of
//     a concrete pointer type (var e *MyErr; return e): package sentinels
//     (var errX = &SMTPError{...}), constructors, parameters and targets of
//     errors.As (non-nil when it reports true) are the norm there.
//
// Fix a finding by checking the error first and returning nil explicitly:
//
//	b, err := open()
//	if err != nil {
//		return nil, err
//	}
//	return b, nil
func TestNoTypedNilInInterface(t *testing.T) {
	var findings []string
	loadModule(t, func(fset *token.FileSet, files []*ast.File, info *types.Info, _ string) {
		for _, f := range files {
			findings = append(findings, typedNilReturns(fset, f, info)...)
		}
	})
	for _, f := range findings {
		t.Error(f)
	}
}

// TestTypedNilHeuristic proves the check catches the start-up panic of
// issue 17 (a failed open forwarded as an interface) and leaves the correct
// forms alone.
func TestTypedNilHeuristic(t *testing.T) {
	const src = `package p
import "errors"
type S interface{ Close() error }
type B struct{}
func (*B) Close() error { return nil }
func open() (*B, error) { return nil, errors.New("locked") }
func badForward() (S, error) { return open() }
func badVar() (S, error) { b, err := open(); return b, err }
func goodNil() (S, error) { b, err := open(); if err != nil { return nil, err }; return b, nil }
func goodLit() (S, error) { return &B{}, errors.New("x") }
func goodConcrete() (*B, error) { return open() }
type E struct{}
func (*E) Error() string { return "" }
func badErr() (int, error) { var e *E; return 0, e }
func goodErr() (int, error) { return 0, &E{} }
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}, Defs: map[*ast.Ident]types.Object{}}
	if _, err := (&types.Config{Importer: importer.Default()}).Check("p", fset, []*ast.File{f}, info); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(typedNilReturns(fset, f, info), "\n")
	for _, want := range []string{"badForward", "badVar", "badErr"} {
		if !strings.Contains(got, want) {
			t.Errorf("not flagged: %s\n%s", want, got)
		}
	}
	for _, good := range []string{"goodNil", "goodLit", "goodConcrete", "goodErr"} {
		if strings.Contains(got, good) {
			t.Errorf("flagged wrongly: %s\n%s", good, got)
		}
	}
}

// typedNilReturns applies the heuristic to every function of f.
func typedNilReturns(fset *token.FileSet, f *ast.File, info *types.Info) []string {
	var out []string
	var check func(name string, sig *types.Signature, body *ast.BlockStmt)
	check = func(name string, sig *types.Signature, body *ast.BlockStmt) {
		if body == nil || sig == nil {
			return
		}
		// errors.As(err, &v) sets v non-nil when it reports true.
		asTarget := map[*types.Var]bool{}
		ast.Inspect(body, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok && len(c.Args) == 2 {
				if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "As" {
					if u, ok := c.Args[1].(*ast.UnaryExpr); ok && u.Op == token.AND {
						if v := varOf(u.X, info); v != nil {
							asTarget[v] = true
						}
					}
				}
			}
			return true
		})
		ast.Inspect(body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncLit:
				s, _ := info.TypeOf(n).(*types.Signature)
				check(name+".func", s, n.Body)
				return false
			case *ast.ReturnStmt:
				for _, msg := range returnFindings(sig, n, info, asTarget) {
					out = append(out, fmt.Sprintf("%s: %s: %s", fset.Position(n.Pos()), name, msg))
				}
			}
			return true
		})
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		var sig *types.Signature
		if obj := info.Defs[fd.Name]; obj != nil {
			sig, _ = obj.Type().(*types.Signature)
		}
		check(fd.Name.Name, sig, fd.Body)
	}
	return out
}

var errorType = types.Universe.Lookup("error").Type()

func returnFindings(sig *types.Signature, r *ast.ReturnStmt, info *types.Info, asTarget map[*types.Var]bool) []string {
	params := map[*types.Var]bool{}
	for i := range sig.Params().Len() {
		params[sig.Params().At(i)] = true
	}
	res := sig.Results()
	if res.Len() == 0 || len(r.Results) == 0 {
		return nil
	}
	last := res.Len() - 1
	hasErr := types.Identical(res.At(last).Type(), errorType)
	if !hasErr {
		return nil
	}
	var out []string
	// return f(): the call's results flow in unchecked.
	if len(r.Results) == 1 && res.Len() > 1 {
		tup, ok := info.TypeOf(r.Results[0]).(*types.Tuple)
		if !ok {
			return nil
		}
		for i := 0; i < tup.Len() && i < res.Len(); i++ {
			if types.IsInterface(res.At(i).Type()) && nillableConcrete(tup.At(i).Type()) {
				out = append(out, fmt.Sprintf("result %d: %s from a forwarded call may be a typed nil in %s",
					i+1, tup.At(i).Type(), res.At(i).Type()))
			}
		}
		return out
	}
	if len(r.Results) != res.Len() || isNilIdent(r.Results[last], info) {
		return nil
	}
	for i, e := range r.Results {
		if !types.IsInterface(res.At(i).Type()) {
			continue
		}
		if i == last && (!localVar(e, info) || asTarget[varOf(e, info)] || params[varOf(e, info)]) {
			// Sentinels (package variables) and constructors of concrete
			// error types are the norm in the error slot.
			continue
		}
		if t := info.TypeOf(e); t != nil && nillableConcrete(t) && !surelyNonNil(e) {
			out = append(out, fmt.Sprintf("result %d: %s on an error path may be a typed nil in %s",
				i+1, t, res.At(i).Type()))
		}
	}
	return out
}

func varOf(e ast.Expr, info *types.Info) *types.Var {
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok {
		return nil
	}
	v, _ := info.Uses[id].(*types.Var)
	return v
}

// localVar reports whether e names a variable declared inside a function.
func localVar(e ast.Expr, info *types.Info) bool {
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok {
		return false
	}
	v, ok := info.Uses[id].(*types.Var)
	return ok && v.Parent() != nil && v.Parent() != v.Pkg().Scope()
}

func isNilIdent(e ast.Expr, info *types.Info) bool {
	id, ok := ast.Unparen(e).(*ast.Ident)
	if !ok {
		return false
	}
	_, isNil := info.Uses[id].(*types.Nil)
	return isNil || (id.Name == "nil" && info.Uses[id] == nil)
}

// nillableConcrete reports whether a value of t can be nil without t being
// an interface.
func nillableConcrete(t types.Type) bool {
	if b, ok := t.(*types.Basic); ok {
		return b.Kind() == types.UnsafePointer
	}
	switch t.Underlying().(type) {
	case *types.Pointer, *types.Map, *types.Slice, *types.Chan, *types.Signature:
		return true
	}
	return false
}

// surelyNonNil recognises expressions that never yield nil.
func surelyNonNil(e ast.Expr) bool {
	switch e := ast.Unparen(e).(type) {
	case *ast.CompositeLit, *ast.FuncLit:
		return true
	case *ast.UnaryExpr:
		return e.Op == token.AND
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok && (id.Name == "new" || id.Name == "make") {
			return true
		}
	}
	return false
}
