// Command payments is the last hop of the trustmesh demo (frontend → orders →
// payments). It accepts a payment for an order and says which SPIFFE ID asked
// for it.
//
// It speaks plaintext HTTP on a loopback address only: its trustmesh proxy
// terminates mTLS in front of it and sets the X-Trustmesh-Peer-Identity header
// to the caller's verified SPIFFE ID. Anything that can reach the app directly
// could forge that header, which is why a non-loopback --listen is refused.
package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/trustmesh/trustmesh/examples/internal/demo"
)

const (
	serviceName = "payments"

	// maxAmount bounds the amount of one payment.
	maxAmount = 1_000_000
)

func main() {
	os.Exit(command().Main()) //nolint:forbidigo // main is the one place that exits (STYLE.md rule 4)
}

// command is the payments command line: --listen only, as payments calls no
// one.
func command() demo.Command {
	return demo.Command{
		Name:          serviceName,
		DefaultListen: "127.0.0.1:8083",
		NewHandler: func(_ demo.Options, logger *slog.Logger) http.Handler {
			return newHandler(logger)
		},
	}
}

// newHandler returns the payments API.
func newHandler(logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", demo.HandleHealthz)
	mux.HandleFunc("POST /pay", handlePay)
	return demo.LogRequests(logger, mux)
}

type payRequest struct {
	Order  string `json:"order"`
	Amount int64  `json:"amount"`
}

type payResponse struct {
	Paid   bool   `json:"paid"`
	Order  string `json:"order"`
	Caller string `json:"caller"`
}

func handlePay(w http.ResponseWriter, r *http.Request) {
	var req payRequest
	if status, err := demo.DecodeJSON(w, r, &req); err != nil {
		demo.WriteError(w, status, err.Error())
		return
	}
	switch {
	case req.Order == "":
		demo.WriteError(w, http.StatusBadRequest, `"order" is required`)
		return
	case len(req.Order) > 64:
		demo.WriteError(w, http.StatusBadRequest, `"order" is longer than 64 bytes`)
		return
	case req.Amount <= 0 || req.Amount > maxAmount:
		demo.WriteError(w, http.StatusBadRequest, fmt.Sprintf(`"amount" must be between 1 and %d`, maxAmount))
		return
	}
	demo.WriteJSON(w, http.StatusOK, payResponse{
		Paid:   true,
		Order:  req.Order,
		Caller: r.Header.Get(demo.PeerIdentityHeader),
	})
}
