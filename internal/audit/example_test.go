package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/trustmesh/trustmesh/internal/audit"
	"github.com/trustmesh/trustmesh/internal/store"
	"github.com/trustmesh/trustmesh/internal/store/auditchain"
)

// A record's hash, computed the way the package documentation specifies,
// which is how an outside tool re-verifies an exported line.
func Example_recordHash() {
	r := store.AuditRecord{
		Seq: 1, Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		Actor: "admin (admin)", Action: "object.apply", Object: "Service/prod/web", Revision: 3,
		Outcome: audit.OutcomeSuccess, Reason: "previous revision 2", RequestID: "9f2c",
		PrevHash: auditchain.Genesis,
	}
	canonical := `{"action":"object.apply","actor":"admin (admin)","object":"Service/prod/web","outcome":"success",` +
		`"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","reason":"previous revision 2",` +
		`"request_id":"9f2c","revision":3,"seq":1,"time":"2026-12-01T09:00:00.000000000Z"}`
	sum := sha256.Sum256([]byte("trustmesh-audit-v1\n" + canonical))
	fmt.Println(hex.EncodeToString(sum[:]) == auditchain.Hash(r))
	// Output: true
}

func ExampleAppendCEF() {
	r := store.AuditRecord{
		Seq: 17, Time: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC),
		Actor: "spiffe://example.org/ns/shop/sa/frontend (proxy web-1)", Action: "authz.deny",
		Object: "AuthorizationPolicy/shop/no-deletes", Revision: 12, Outcome: audit.OutcomeDenied,
		Reason: "deny-policy (rule 0): DELETE /orders/7 from spiffe://example.org/ns/shop/sa/frontend",
	}
	os.Stdout.Write(audit.AppendCEF(nil, "v0.9.0", r))
	// Output:
	// CEF:0|trustmesh|trustmesh|v0.9.0|authz.deny|authz.deny|7|rt=1796115600000 externalId=17 suser=spiffe://example.org/ns/shop/sa/frontend (proxy web-1) act=authz.deny outcome=denied cs1Label=object cs1=AuthorizationPolicy/shop/no-deletes cs2Label=reason cs2=deny-policy (rule 0): DELETE /orders/7 from spiffe://example.org/ns/shop/sa/frontend cn1Label=revision cn1=12
}
