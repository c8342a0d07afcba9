package accesslog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/trustmesh/trustmesh/internal/telemetry/accesslog"
)

func Example() {
	dir, err := os.MkdirTemp("", "accesslog")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "access.log")

	l, err := accesslog.New(accesslog.Config{Path: path, MaxSizeMB: 10, MaxBackups: 3, Compress: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()

	// On the request path: fill an Entry and hand it over; Log never blocks.
	l.Log(&accesslog.Entry{
		Time:      time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Direction: "inbound", Protocol: "HTTP/1.1",
		SourceID: "spiffe://example.org/ns/shop/sa/web", Service: "orders",
		Method: "GET", Path: "/orders/7", Status: 403,
		Duration: 150 * time.Microsecond, Decision: "deny", Reason: "no-allow-match",
		TLSGroup: "X25519MLKEM768",
	})

	cancel() // Run writes what is queued, closes the file and returns
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	data, _ := os.ReadFile(path)
	fmt.Print(string(data))
	fmt.Println("dropped:", l.Dropped())
	// Output:
	// {"time":"2026-03-01T12:00:00Z","direction":"inbound","protocol":"HTTP/1.1","source_id":"spiffe://example.org/ns/shop/sa/web","service":"orders","method":"GET","path":"/orders/7","status":403,"duration_s":0.00015,"decision":"deny","reason":"no-allow-match","tls_group":"X25519MLKEM768"}
	// dropped: 0
}
