package localapi

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRoutes keeps the route table sorted in the source, and checks that
// every route has a permission and that its handler enforces it on its own.
func TestRoutes(t *testing.T) {
	t.Run("sorted", func(t *testing.T) {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "routes.go", nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "routes" {
				return true
			}
			for _, elt := range vs.Values[0].(*ast.CompositeLit).Elts {
				k, err := strconv.Unquote(elt.(*ast.KeyValueExpr).Key.(*ast.BasicLit).Value)
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			return false
		})
		if len(keys) != len(routes) {
			t.Fatalf("found %d keys in routes.go, routes has %d", len(keys), len(routes))
		}
		if !slices.IsSorted(keys) {
			t.Errorf("routes are not sorted:\n%s", strings.Join(keys, "\n"))
		}
	})
	s := &Server{backend: nilBackend{}, ready: func() bool { return true }, log: slog.New(slog.DiscardHandler)}
	for key, rt := range routes {
		t.Run(key, func(t *testing.T) {
			method, path, ok := strings.Cut(key, " ")
			if !ok || !strings.HasPrefix(path, "/") || method != strings.ToUpper(method) {
				t.Fatalf("key %q is not \"METHOD /path\"", key)
			}
			if rt.perm == permUnset || rt.h == nil {
				t.Fatalf("route %q has no permission or no handler", key)
			}
			// Call the handler itself, past the router's check, with a
			// peer one step short of the permission.
			var below *connInfo
			switch rt.perm {
			case permAny:
				return
			case permRead:
				below = &connInfo{kind: Unix, access: accessNone, hosts: []string{""}}
			case permWrite:
				below = &connInfo{kind: Unix, access: accessRead, hosts: []string{""}}
			case permAdmit:
				below = &connInfo{kind: TCP, access: accessRead, hosts: []string{""}}
			case permReadSocket:
				below = &connInfo{kind: TCP, access: accessWrite, hosts: []string{""}}
			}
			r := httptest.NewRequest(method, path, strings.NewReader(`{"key":"k"}`))
			r.Header.Set("Content-Type", "application/json")
			r.Host = ""
			r = r.WithContext(context.WithValue(r.Context(), connKey{}, below))
			err := rt.h(s, httptest.NewRecorder(), r)
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusForbidden {
				t.Errorf("handler with a %v peer: %v, want its own 403", rt.perm, err)
			}
		})
	}
}
