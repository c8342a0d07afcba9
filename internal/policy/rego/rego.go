package rego

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	oparego "github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// DefaultTimeBudget is how long one evaluation may run unless
// WithTimeBudget says otherwise.
const DefaultTimeBudget = 10 * time.Millisecond

// ErrTimeBudget is wrapped by the error of an evaluation stopped because it
// ran out of its time budget (as opposed to failing, or being cancelled by
// the caller's context).
var ErrTimeBudget = errors.New("time budget exceeded")

// Option is an optional setting of Compile and NewQuery.
type Option func(*options)

type options struct {
	budget time.Duration
}

// WithTimeBudget sets how long one evaluation may run (DefaultTimeBudget if
// not set). It must be positive.
func WithTimeBudget(d time.Duration) Option {
	return func(o *options) { o.budget = d }
}

// Decision is the result of one evaluation of a CUSTOM policy.
type Decision struct {
	// Allow is the value of the module's allow rule; false whenever Eval
	// returns an error.
	Allow bool
	// Reason is the value of the module's reason rule, for logs; empty if
	// the module defines none or it is undefined for the input.
	Reason string
}

// Module is a compiled, prepared CUSTOM policy. Safe for concurrent use.
type Module struct {
	p         prepared
	hasReason bool
}

// Compile parses and compiles src, a Rego v1 module, and prepares the query
// of its decision (data.<package>.allow and data.<package>.reason). name
// (e.g. "default/ext-check") names the module in errors, which give the line
// of each problem.
//
// Besides Rego's own rules, the module must declare a package, define a
// single-value rule allow, define reason (if at all) as a single-value rule,
// call none of the built-ins of DeniedBuiltins and refer to no data outside
// its own package.
func Compile(name, src string, opts ...Option) (*Module, error) {
	c, mod, o, err := compile(name, src, opts, checkRules)
	if err != nil {
		return nil, err
	}
	m := &Module{hasReason: definesRule(mod, reasonRule)}
	pkg := mod.Package.Path.String()
	query := fmt.Sprintf("[x | x := %s.%s]", pkg, allowRule)
	if m.hasReason {
		query = fmt.Sprintf("[[x | x := %s.%s], [x | x := %s.%s]]", pkg, allowRule, pkg, reasonRule)
	}
	// The decision is read from the AST: converting it to Go values first
	// costs allocations and tells us nothing more.
	m.p, err = prepare(name, c, query, o, oparego.GenerateJSON(keepTerm))
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Eval evaluates the module against input, a document shaped as the
// package documentation describes. It fails closed: when allow is undefined
// or not a boolean, when reason is defined but not a string, when evaluation
// fails (built-in errors included) or runs out of its time budget, or when
// ctx is done, Eval returns Allow false and an error saying why. The caller
// denies the request.
func (m *Module) Eval(ctx context.Context, input map[string]any) (Decision, error) {
	rs, err := m.p.eval(ctx, input)
	if err != nil {
		return Decision{}, err
	}
	d, err := m.decision(rs)
	if err != nil {
		return Decision{Reason: d.Reason}, fmt.Errorf("%s: %w", m.p.name, err)
	}
	return d, nil
}

// decision reads the result of the query Compile prepared: [allow] or
// [[allow], [reason]], where an empty array means undefined.
func (m *Module) decision(rs oparego.ResultSet) (Decision, error) {
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return Decision{}, errors.New("the query returned no decision")
	}
	result, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return Decision{}, fmt.Errorf("the query returned %T, want a term", rs[0].Expressions[0].Value)
	}
	allowed, ok := result.Value.(*ast.Array)
	if !ok {
		return Decision{}, fmt.Errorf("the query returned a %s, want an array", ast.ValueName(result.Value))
	}
	var d Decision
	if m.hasReason {
		reasons, ok1 := allowed.Elem(1).Value.(*ast.Array)
		allowed, ok = allowed.Elem(0).Value.(*ast.Array)
		if !ok || !ok1 {
			return Decision{}, errors.New("the query returned no decision")
		}
		if reasons.Len() > 0 {
			reason, ok := reasons.Elem(0).Value.(ast.String)
			if !ok {
				return Decision{}, fmt.Errorf("reason is a %s, want a string", ast.ValueName(reasons.Elem(0).Value))
			}
			d.Reason = string(reason)
		}
	}
	if allowed.Len() == 0 {
		return d, errors.New("allow is undefined for this input (a \"default allow := false\" rule makes it always defined)")
	}
	allow, ok := allowed.Elem(0).Value.(ast.Boolean)
	if !ok {
		return d, fmt.Errorf("allow is a %s, want a boolean", ast.ValueName(allowed.Elem(0).Value))
	}
	d.Allow = bool(allow)
	return d, nil
}

// Query is an arbitrary query prepared over a module, with the restrictions
// of Compile except the rules about allow and reason. It is for benchmarks
// and tools, not for the request path. Safe for concurrent use.
type Query struct {
	p prepared
}

// NewQuery compiles src as Compile does and prepares query (e.g.
// "data.bench.allow") over it.
func NewQuery(name, src, query string, opts ...Option) (*Query, error) {
	c, _, o, err := compile(name, src, opts, nil)
	if err != nil {
		return nil, err
	}
	p, err := prepare(name, c, query, o)
	if err != nil {
		return nil, err
	}
	return &Query{p: p}, nil
}

// Eval evaluates the query against input within the time budget. The
// result set is OPA's: one result per solution, with Go (JSON) values.
func (q *Query) Eval(ctx context.Context, input map[string]any) (oparego.ResultSet, error) {
	return q.p.eval(ctx, input)
}

// prepared is a query ready for evaluation.
type prepared struct {
	name   string
	budget time.Duration
	query  oparego.PreparedEvalQuery
}

// compile parses, checks and compiles src; check, if not nil, adds checks
// of the parsed module.
func compile(name, src string, opts []Option, check func(string, *ast.Module) error) (*ast.Compiler, *ast.Module, options, error) {
	o := options{budget: DefaultTimeBudget}
	for _, opt := range opts {
		opt(&o)
	}
	if o.budget <= 0 {
		return nil, nil, o, fmt.Errorf("%s: time budget %v: want a positive duration", name, o.budget)
	}
	caps := capabilities()
	mod, err := parse(name, src, caps)
	if err != nil {
		return nil, nil, o, err
	}
	checks := []func(string, *ast.Module) error{checkBuiltins, checkImports}
	if check != nil {
		checks = append(checks, check)
	}
	var errs []error
	for _, fn := range checks {
		if err := fn(name, mod); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, o, err
	}
	c := ast.NewCompiler().
		WithCapabilities(caps).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(false)
	c.Compile(map[string]*ast.Module{name: mod})
	if c.Failed() {
		return nil, nil, o, astErrors(name, c.Errors)
	}
	// Imports and rule names are resolved in the compiled module: data
	// references are checked there.
	if err := checkData(name, c.Modules[name]); err != nil {
		return nil, nil, o, err
	}
	return c, mod, o, nil
}

// prepare prepares query over the modules of c.
func prepare(name string, c *ast.Compiler, query string, o options, extra ...func(*oparego.Rego)) (prepared, error) {
	args := append([]func(*oparego.Rego){
		oparego.Compiler(c),
		oparego.Query(query),
		oparego.Capabilities(c.Capabilities()),
		oparego.SetRegoVersion(ast.RegoV1),
		oparego.StrictBuiltinErrors(true),
	}, extra...)
	pq, err := oparego.New(args...).PrepareForEval(context.Background())
	if err != nil {
		return prepared{}, fmt.Errorf("prepare query %s: %w", query, astErrors(name, err))
	}
	return prepared{name: name, budget: o.budget, query: pq}, nil
}

// eval evaluates the prepared query against input within the time budget.
func (p *prepared) eval(ctx context.Context, input map[string]any) (oparego.ResultSet, error) {
	// Converted here rather than by OPA, which first copies the whole
	// document to normalize Go types that InterfaceToValue handles anyway.
	value, err := ast.InterfaceToValue(input)
	if err != nil {
		return nil, fmt.Errorf("%s: input: %w", p.name, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, p.budget, ErrTimeBudget)
	defer cancel()
	// OPA's own cancellation starts a goroutine per evaluation; a callback
	// registered on the context does the same job for less.
	halt := topdown.NewCancel()
	stop := context.AfterFunc(ctx, halt.Cancel)
	defer stop()
	rs, err := p.query.Eval(ctx, oparego.EvalParsedInput(value), oparego.EvalExternalCancel(halt))
	if err != nil {
		if ctx.Err() != nil {
			if cause := context.Cause(ctx); errors.Is(cause, ErrTimeBudget) {
				return nil, fmt.Errorf("%s: evaluation stopped: %w (%v)", p.name, ErrTimeBudget, p.budget)
			}
			return nil, fmt.Errorf("%s: evaluation cancelled: %w", p.name, context.Cause(ctx))
		}
		var located *topdown.Error
		if errors.As(err, &located) && located.Location != nil && located.Location.File != "" {
			// The error names the module and the line already.
			return nil, fmt.Errorf("evaluate: %w", err)
		}
		return nil, fmt.Errorf("%s: evaluate: %w", p.name, err)
	}
	return rs, nil
}

// definesRule reports whether mod has a rule whose head is name alone.
func definesRule(mod *ast.Module, name ast.Var) bool {
	for _, rule := range mod.Rules {
		if ref := rule.Head.Ref(); len(ref) == 1 && ref[0].Value.Compare(name) == 0 {
			return true
		}
	}
	return false
}

// keepTerm is the GenerateJSON function that returns results as AST terms.
func keepTerm(t *ast.Term, _ *oparego.EvalContext) (any, error) {
	return t, nil
}
