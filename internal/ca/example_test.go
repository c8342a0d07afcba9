package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/ca"
)

func Example() {
	dir, err := os.MkdirTemp("", "ca-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	td := spiffeid.RequireTrustDomainFromString("example.org")
	authority, err := ca.New(ca.Config{TrustDomain: td, Dir: dir})
	if err != nil {
		log.Fatal(err)
	}

	// An X.509-SVID for a workload's key, verified as a peer would.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	id := spiffeid.RequireFromPath(td, "/ns/default/sa/api")
	chain, _, err := authority.SignX509SVID(ca.X509Params{ID: id, PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	verified, _, err := x509svid.Verify(chain, authority.Bundle())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("X.509-SVID:", verified)

	// A JWT-SVID for an audience.
	token, _, _, err := authority.SignJWTSVID(id, []string{"spiffe://example.org/db"}, 5*time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	svid, err := jwtsvid.ParseAndValidate(token, authority.Bundle(), []string{"spiffe://example.org/db"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("JWT-SVID:", svid.ID)
	// Output:
	// X.509-SVID: spiffe://example.org/ns/default/sa/api
	// JWT-SVID: spiffe://example.org/ns/default/sa/api
}

func ExampleCA_Activate() {
	dir, err := os.MkdirTemp("", "ca-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	authority, err := ca.New(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	show := func(step string) {
		b := authority.Bundle()
		fmt.Printf("%-9s X.509 authorities: %d, JWT authorities: %d, states:", step, len(b.X509Authorities()), len(b.JWTAuthorities()))
		for _, a := range authority.Authorities() {
			fmt.Print(" ", a.State)
		}
		fmt.Println()
	}
	show("start")
	if _, err := authority.Prepare(); err != nil {
		log.Fatal(err)
	}
	show("prepare")
	// The server waits for the new keys to reach every verifier first.
	if _, err := authority.Activate(); err != nil {
		log.Fatal(err)
	}
	show("activate")
	// The old authority signed nothing, so it may leave the bundle at once.
	if _, err := authority.Tidy(); err != nil {
		log.Fatal(err)
	}
	show("tidy")
	// Output:
	// start     X.509 authorities: 1, JWT authorities: 1, states: active
	// prepare   X.509 authorities: 2, JWT authorities: 2, states: active prepared
	// activate  X.509 authorities: 2, JWT authorities: 2, states: retired active
	// tidy      X.509 authorities: 1, JWT authorities: 1, states: active
}
