package httpnorm_test

import (
	"fmt"

	"github.com/trustmesh/trustmesh/internal/httpnorm"
)

// The proxy splits the request-target, normalizes the path once, matches its
// policies against the result and forwards the same result to the
// application.
func ExamplePath() {
	for _, target := range []string{
		"/api/%2e%2e/admin?x=1",
		"//static/./css/site%2ecss",
		"/public/..;/admin",
		"/public/..%2fadmin",
	} {
		path, query, err := httpnorm.Split(target)
		if err == nil {
			path, err = httpnorm.Path(path, httpnorm.Options{})
		}
		if err != nil {
			fmt.Printf("%s -> 400 (%s)\n", target, httpnorm.ReasonOf(err))
			continue
		}
		fmt.Printf("%s -> %s query %q\n", target, path, query)
	}
	// Output:
	// /api/%2e%2e/admin?x=1 -> /admin query "x=1"
	// //static/./css/site%2ecss -> /static/css/site.css query ""
	// /public/..;/admin -> 400 (path-parameter)
	// /public/..%2fadmin -> 400 (encoded-slash)
}

// An application that routes on the escaped path and treats "%2F" as data
// (a repository name, say) can keep encoded slashes.
func ExamplePath_keepEncodedSlashes() {
	opt := httpnorm.Options{EncodedSlashes: httpnorm.KeepEncodedSlashes}
	p, err := httpnorm.Path("/repos/trustmesh%2fmesh/../issues", opt)
	fmt.Println(p, err)
	// Output:
	// /repos/issues <nil>
}

func ExampleHost() {
	for _, h := range []string{"Orders.Default.SVC.:8080", "[0:0::1]:443", "admin@orders", "127.1"} {
		n, err := httpnorm.Host(h)
		fmt.Printf("%q -> %q %v\n", h, n, err)
	}
	// Output:
	// "Orders.Default.SVC.:8080" -> "orders.default.svc" <nil>
	// "[0:0::1]:443" -> "[::1]" <nil>
	// "admin@orders" -> "" bad-host: userinfo ('@') is not allowed
	// "127.1" -> "" bad-host: numeric name that is not a dotted-quad IPv4 address
}

func ExampleParseSlashPolicy() {
	p, err := httpnorm.ParseSlashPolicy("decode")
	fmt.Println(p, err)
	_, err = httpnorm.ParseSlashPolicy("merge")
	fmt.Println(err)
	// Output:
	// decode <nil>
	// unknown encoded-slash policy "merge": want reject, keep or decode
}
