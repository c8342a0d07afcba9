package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// NewClient returns a client for a downstream service whose every call is
// bounded by timeout. It does not follow redirects: every hop must go through
// the proxy's listener, nowhere else.
func NewClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Downstream is the next service of the chain, reached in plaintext through
// the local outbound listener of this app's trustmesh proxy.
type Downstream struct {
	// Name names the service in the reasons of a *CallError, as in
	// "payments is unreachable".
	Name string
	// URL is the endpoint that Post sends to.
	URL string
	// Client makes the calls (see NewClient). Its Timeout bounds each call
	// and is named in the reason when a call times out.
	Client *http.Client
}

// CallError is a failed call to a downstream service: Reason is for the
// client, the wrapped Cause only for the log.
type CallError struct {
	Reason string
	Cause  error
}

func (e *CallError) Error() string {
	if e.Cause == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Cause.Error()
}

func (e *CallError) Unwrap() error { return e.Cause }

// Post sends v as a JSON body to d.URL and returns the body of the answer,
// which must have status want and at most MaxBodyBytes bytes. what names the
// request in reasons, as in "payment". Every error is a *CallError.
func (d Downstream) Post(ctx context.Context, what string, v any, want int) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, &CallError{Reason: "cannot encode the " + what, Cause: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return nil, &CallError{Reason: "cannot build the " + what + " request", Cause: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.Client.Do(req)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return nil, &CallError{Reason: fmt.Sprintf("%s did not answer within %s", d.Name, d.Client.Timeout), Cause: err}
		}
		return nil, &CallError{Reason: d.Name + " is unreachable (is this app's trustmesh proxy running?)", Cause: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, &CallError{Reason: "reading the answer of " + d.Name + " failed", Cause: err}
	}
	if len(raw) > MaxBodyBytes {
		return nil, &CallError{Reason: fmt.Sprintf("%s answered with more than %d bytes", d.Name, MaxBodyBytes)}
	}
	if resp.StatusCode != want {
		return nil, &CallError{Reason: fmt.Sprintf("%s answered %s: %s", d.Name, resp.Status, errorDetail(raw))}
	}
	return raw, nil
}

// errorDetail extracts a short reason from an error answer: the "error" field
// of a JSON body, else the start of the body as text.
func errorDetail(body []byte) string {
	const maxLen = 200
	var e struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if msg == "" {
		return "(empty body)"
	}
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	return strings.ToValidUTF8(msg, "?")
}
