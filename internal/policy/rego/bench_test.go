package rego

import (
	"context"
	"testing"
	"time"
)

// benchBudget replaces the default time budget in benchmarks: its value
// does not change the cost of an evaluation, and on a shared machine an
// evaluation of microseconds now and then waits more than 10 ms for a CPU.
var benchBudget = WithTimeBudget(time.Second)

// BenchmarkEval evaluates a small module against a full input document.
func BenchmarkEval(b *testing.B) {
	m := mustCompile(b, publicGET, benchBudget)
	input := requestInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := m.Eval(ctx, input)
		if err != nil || !d.Allow {
			b.Fatalf("Eval: got %+v, %v; want Allow true", d, err)
		}
	}
}

// BenchmarkEvalReason is BenchmarkEval with a reason rule, which makes the
// query read two rules.
func BenchmarkEvalReason(b *testing.B) {
	m := mustCompile(b, publicGET+"\nreason := \"not a public GET\" if not allow\n", benchBudget)
	input := with("request.method", "POST")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := m.Eval(ctx, input)
		if err != nil || d.Allow || d.Reason == "" {
			b.Fatalf("Eval: got %+v, %v; want a deny with a reason", d, err)
		}
	}
}

// BenchmarkQuery evaluates the same module as BenchmarkEval through
// NewQuery and data.p.allow: the cost of OPA without this package's query
// shape and result reading.
func BenchmarkQuery(b *testing.B) {
	q, err := NewQuery("bench", publicGET, "data.p.allow", benchBudget)
	if err != nil {
		b.Fatalf("NewQuery: %v", err)
	}
	input := requestInput()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		rs, err := q.Eval(ctx, input)
		if err != nil || !rs.Allowed() {
			b.Fatalf("Eval: got %v, %v; want true", rs, err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile("bench", publicGET); err != nil {
			b.Fatalf("Compile: %v", err)
		}
	}
}
