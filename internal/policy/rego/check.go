package rego

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Names of the rules a CUSTOM module defines.
const (
	allowRule  = "allow"
	reasonRule = "reason"
)

// parse parses src as a Rego v1 module. Its errors name the module and the
// line, one per problem.
func parse(name, src string, caps *ast.Capabilities) (*ast.Module, error) {
	mod, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{
		RegoVersion:  ast.RegoV1,
		Capabilities: caps,
	})
	if err != nil {
		return nil, astErrors(name, err)
	}
	if mod == nil || mod.Package == nil {
		// Not returned by this OPA version for a non-nil error, but the
		// checks below rely on it.
		return nil, fmt.Errorf("%s: the module has no package declaration: want \"package <name>\" first", name)
	}
	return mod, nil
}

// astErrors turns OPA's errors (an ast.Errors list or one *ast.Error) into
// one error per problem, joined, each naming the module and the line, with
// clearer words for the problems an operator is likely to make.
func astErrors(name string, err error) error {
	var list ast.Errors
	var one *ast.Error
	switch {
	case errors.As(err, &list):
	case errors.As(err, &one):
		list = ast.Errors{one}
	default:
		return fmt.Errorf("%s: %w", name, err)
	}
	errs := make([]error, 0, len(list))
	for _, e := range list {
		if e.Code == ast.ParseErr {
			switch e.Message {
			case "package expected":
				e.Message = "the module has no package declaration: want \"package <name>\" first"
			case "empty module":
				e.Message = "the module is empty: want a package declaration and an allow rule"
			}
		}
		if e.Location == nil || e.Location.Row == 0 {
			e.Location = nil
			errs = append(errs, fmt.Errorf("%s: %w", name, e))
			continue
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// checkBuiltins reports calls to, and with-replacements of, the denied
// built-ins. Compiling against capabilities without them would refuse these
// too, as undefined functions; this check says why.
func checkBuiltins(name string, mod *ast.Module) error {
	var errs []error
	check := func(op *ast.Term, loc *ast.Location) {
		ref, ok := op.Value.(ast.Ref)
		if !ok {
			return
		}
		fn := ref.String()
		why, denied := deniedBuiltins[fn]
		if !denied {
			return
		}
		if op.Location != nil {
			loc = op.Location
		}
		errs = append(errs, fmt.Errorf("%s: built-in function %s is not allowed in CUSTOM policies: %s",
			where(name, loc), fn, why))
	}
	ast.WalkExprs(mod, func(e *ast.Expr) bool {
		if e.IsCall() {
			check(e.OperatorTerm(), e.Location)
		}
		for _, w := range e.With {
			check(w.Target, w.Location)
		}
		return false
	})
	ast.WalkTerms(mod, func(t *ast.Term) bool {
		if call, ok := t.Value.(ast.Call); ok && len(call) > 0 {
			check(call[0], t.Location)
		}
		return false
	})
	return errors.Join(errs...)
}

// checkRules checks that the module defines the decision: a single-value
// rule allow, and if reason is defined, a single-value rule reason. Rules
// like "allow contains x", "allow(x)" or "allow.x" are refused: the query
// reads data.<package>.allow, which they would make a set, a function or an
// object.
func checkRules(name string, mod *ast.Module) error {
	var errs []error
	found := false
	for _, rule := range mod.Rules {
		ref := rule.Head.Ref()
		head, ok := ref[0].Value.(ast.Var)
		if !ok || (head != allowRule && head != reasonRule) {
			continue
		}
		switch {
		case len(rule.Head.Args) > 0:
			errs = append(errs, fmt.Errorf("%s: %s is a function: want a rule (%s if ... or %s := ...)",
				where(name, rule.Location), head, head, head))
		case len(ref) > 1:
			errs = append(errs, fmt.Errorf("%s: %s has a reference head (%s): want a rule named %s alone",
				where(name, rule.Location), head, ref, head))
		case rule.Head.RuleKind() == ast.MultiValue:
			errs = append(errs, fmt.Errorf("%s: %s is a multi-value (set) rule: want a single value (%s if ... or %s := ...)",
				where(name, rule.Location), head, head, head))
		case head == allowRule:
			found = true
		}
	}
	if !found && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s: the module defines no rule named allow: want the decision, e.g. \"default allow := false\" and \"allow if ...\"", name))
	}
	return errors.Join(errs...)
}

// checkImports reports imports of data outside the module's own package.
// There is no data store: such a document would always be undefined, which
// is never what the author meant.
func checkImports(name string, mod *ast.Module) error {
	pkg := mod.Package.Path
	var errs []error
	for _, imp := range mod.Imports {
		ref, ok := imp.Path.Value.(ast.Ref)
		if !ok || !ref[0].Equal(ast.DefaultRootDocument) || ref.HasPrefix(pkg) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: import %s: a CUSTOM module may import only from its own package (%s) and from input: there is no other data",
			where(name, imp.Location), ref, pkg))
	}
	return errors.Join(errs...)
}

// checkData reports references to data outside the module's own package.
// It checks the compiled module, where imports and rule names are resolved
// to full references.
func checkData(name string, mod *ast.Module) error {
	pkg := mod.Package.Path
	var errs []error
	for _, rule := range mod.Rules {
		ast.WalkTerms(rule, func(t *ast.Term) bool {
			ref, ok := t.Value.(ast.Ref)
			if !ok || !ref[0].Equal(ast.DefaultRootDocument) || ref.HasPrefix(pkg) {
				return false
			}
			errs = append(errs, fmt.Errorf("%s: reference to %s: a CUSTOM module may refer only to its own package (%s) and to input: there is no other data",
				where(name, t.Location), ref, pkg))
			return true
		})
	}
	return errors.Join(errs...)
}

// where is the position of an error: the module's name and the line.
func where(name string, loc *ast.Location) string {
	if loc == nil || loc.Row == 0 {
		return name
	}
	return fmt.Sprintf("%s:%d", name, loc.Row)
}
