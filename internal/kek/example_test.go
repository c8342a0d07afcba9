package kek_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/trustmesh/trustmesh/internal/kek"
)

func Example() {
	dir, err := os.MkdirTemp("", "kek-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kek")

	// What `trustmesh kek generate --out FILE` does; every server replica
	// then loads the same file.
	if err := kek.Generate(path); err != nil {
		log.Fatal(err)
	}
	k, err := kek.Load(path)
	if err != nil {
		log.Fatal(err)
	}

	sealed, err := k.Seal("ca/admin-ca.key.pem", []byte("a private key"))
	if err != nil {
		log.Fatal(err)
	}
	plaintext, err := k.Open("ca/admin-ca.key.pem", sealed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(plaintext))

	// A sealed value does not open under another name.
	_, err = k.Open("ca/other.key.pem", sealed)
	fmt.Println(err)
	// Output:
	// a private key
	// sealed value does not authenticate as "ca/other.key.pem": it was modified, or sealed for another name
}
