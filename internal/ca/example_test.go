package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/trustmesh/trustmesh/internal/ca"
	"github.com/trustmesh/trustmesh/internal/kek"
	"github.com/trustmesh/trustmesh/internal/store/sqlite"
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

// Two server replicas share one CA through the store; private keys reach
// the database sealed with the KEK every replica loads.
func ExampleNewStoreStorage() {
	dir, err := os.MkdirTemp("", "ca-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "trustmesh.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if err := kek.Generate(filepath.Join(dir, "kek")); err != nil {
		log.Fatal(err)
	}
	k, err := kek.Load(filepath.Join(dir, "kek"))
	if err != nil {
		log.Fatal(err)
	}

	td := spiffeid.RequireTrustDomainFromString("example.org")
	replica := func() *ca.CA {
		storage, err := ca.NewStoreStorage(st, "ca/", k)
		if err != nil {
			log.Fatal(err)
		}
		c, err := ca.New(ca.Config{TrustDomain: td, Storage: storage})
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	leader, follower := replica(), replica()

	// The elected replica rotates; the other follows when the store reports
	// a blob change.
	prepared, err := leader.Prepare()
	if err != nil {
		log.Fatal(err)
	}
	changed, err := follower.Reload()
	if err != nil {
		log.Fatal(err)
	}
	_, ok := follower.PreparedSince()
	fmt.Println("changed:", changed, "prepared:", ok, "same bundle:", follower.Bundle().Equal(leader.Bundle()))

	if _, err := leader.Activate(); err != nil {
		log.Fatal(err)
	}
	if _, err := follower.Reload(); err != nil {
		log.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	_, signer, err := follower.SignX509SVID(ca.X509Params{ID: spiffeid.RequireFromPath(td, "/api"), PublicKey: key.Public(), TTL: time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("follower signs with the new authority:", signer == prepared.ID)
	// Output:
	// changed: true prepared: true same bundle: true
	// follower signs with the new authority: true
}
