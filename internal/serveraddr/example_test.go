package serveraddr_test

import (
	"fmt"

	"github.com/trustmesh/trustmesh/internal/serveraddr"
)

func ExampleParse() {
	// --server 10.0.0.1:8443,[fd00::2]:8443 --server cp-3.example.org:8443
	addrs, err := serveraddr.Parse("10.0.0.1:8443,[fd00::2]:8443", "cp-3.example.org:8443")
	fmt.Println(addrs, err)

	_, err = serveraddr.Parse("10.0.0.1:8443,10.0.0.2")
	fmt.Println(err)
	// Output:
	// [10.0.0.1:8443 [fd00::2]:8443 cp-3.example.org:8443] <nil>
	// server address 2 "10.0.0.2": missing :PORT; want HOST:PORT, e.g. 10.0.0.1:8443,[fd00::2]:8443,cp-3.example.org:8443
}
