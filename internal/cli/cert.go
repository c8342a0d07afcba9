package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/trustmesh/trustmesh/internal/atomicfile"
	"github.com/trustmesh/trustmesh/internal/server/adminapi"
)

func newCertCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Inspect, fetch and revoke certificates (X.509-SVIDs)",
		Example: `  trustmesh cert inspect ./data/bundle.pem
  trustmesh cert fetch --socket /run/trustmesh/agent.sock
  trustmesh cert revoke --spiffe-id spiffe://example.org/ns/default/sa/web --data-dir ./data`,
	}
	cmd.AddCommand(newCertInspectCmd(s), newCertFetchCmd(s), newCertRevokeCmd(s), newCertRevocationsCmd(s))
	return cmd
}

// certInfo is what inspect and fetch print for one certificate.
type certInfo struct {
	Subject      string    `json:"subject"`
	Issuer       string    `json:"issuer"`
	SPIFFEID     string    `json:"spiffeID,omitempty"`
	Serial       string    `json:"serial"`
	SerialHex    string    `json:"serialHex"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
	KeyAlgorithm string    `json:"keyAlgorithm"`
	IsCA         bool      `json:"isCA"`
	DNSNames     []string  `json:"dnsNames,omitempty"`
}

// chainInfo describes a leaf and the rest of its chain.
type chainInfo struct {
	certInfo
	Hint  string     `json:"hint,omitempty"`
	Chain []certInfo `json:"chain"`
}

func describeCert(c *x509.Certificate) certInfo {
	ci := certInfo{
		Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.String(),
		SerialHex: colonHex(c.SerialNumber.Bytes()), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
		KeyAlgorithm: keyAlgorithm(c.PublicKey), IsCA: c.IsCA, DNSNames: c.DNSNames,
	}
	if len(c.URIs) > 0 {
		ci.SPIFFEID = c.URIs[0].String()
	}
	return ci
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = hex.EncodeToString([]byte{x})
	}
	return strings.Join(parts, ":")
}

func keyAlgorithm(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", k)
	}
}

func describeChain(certs []*x509.Certificate, hint string) chainInfo {
	out := chainInfo{certInfo: describeCert(certs[0]), Hint: hint, Chain: []certInfo{}}
	for _, c := range certs[1:] {
		out.Chain = append(out.Chain, describeCert(c))
	}
	return out
}

func printChain(w io.Writer, ci chainInfo, now time.Time) {
	fmt.Fprintf(w, "SPIFFE ID:     %s\n", orDash(ci.SPIFFEID))
	if ci.Hint != "" {
		fmt.Fprintf(w, "Hint:          %s\n", ci.Hint)
	}
	fmt.Fprintf(w, "Subject:       %s\n", ci.Subject)
	fmt.Fprintf(w, "Issuer:        %s\n", ci.Issuer)
	fmt.Fprintf(w, "Serial:        %s (%s)\n", ci.Serial, ci.SerialHex)
	fmt.Fprintf(w, "Valid:         %s to %s (%s)\n", ci.NotBefore.Format(time.RFC3339), ci.NotAfter.Format(time.RFC3339), remaining(ci.NotAfter, now))
	fmt.Fprintf(w, "Key:           %s\n", ci.KeyAlgorithm)
	if len(ci.DNSNames) > 0 {
		fmt.Fprintf(w, "DNS names:     %s\n", strings.Join(ci.DNSNames, ", "))
	}
	if ci.IsCA {
		fmt.Fprintf(w, "CA:            yes\n")
	}
	for i, c := range ci.Chain {
		fmt.Fprintf(w, "Chain[%d]:      %s (issuer %s, %s, expires %s)\n", i+1, c.Subject, c.Issuer, c.KeyAlgorithm, c.NotAfter.Format(time.RFC3339))
	}
}

func remaining(t, now time.Time) string {
	d := t.Sub(now).Round(time.Second)
	if d <= 0 {
		return "EXPIRED " + (-d).String() + " ago"
	}
	return "expires in " + d.String()
}

func newCertInspectCmd(s *streams) *cobra.Command {
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print the subject, SPIFFE ID, serial, validity, chain and key algorithm of a PEM file",
		Example: `  trustmesh cert inspect svid.pem
  trustmesh cert inspect ./data/bundle.pem -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var certs []*x509.Certificate
			for rest := data; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				if blk.Type != "CERTIFICATE" {
					continue // keys are skipped and never printed
				}
				c, err := x509.ParseCertificate(blk.Bytes)
				if err != nil {
					return fmt.Errorf("%s: certificate %d: %w", args[0], len(certs)+1, err)
				}
				certs = append(certs, c)
			}
			if len(certs) == 0 {
				return fmt.Errorf("%s holds no PEM CERTIFICATE block", args[0])
			}
			ci := describeChain(certs, "")
			if out.format == "json" {
				return printStructured(s.out, "json", ci)
			}
			printChain(s.out, ci, time.Now())
			return nil
		},
	}
	out.register(cmd, "text", "text", "json")
	return cmd
}

func newCertFetchCmd(s *streams) *cobra.Command {
	var (
		socket  string
		out     outputFlag
		write   string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "fetch [--socket PATH]",
		Short: "Fetch this process's X.509-SVIDs from the agent's Workload API and print them",
		Long: `Fetch X.509-SVIDs over the SPIFFE Workload API, exactly as a workload does.
What you get depends on who runs the command (uid, gid, executable): the
agent attests the caller. --write DIR saves svid.pem, key.pem (0600) and
bundle.pem for the first SVID.`,
		Example: `  trustmesh cert fetch --socket /run/trustmesh/agent.sock
  trustmesh cert fetch --socket /run/trustmesh/agent.sock -o json --write ./svid`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			resp, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr("unix://"+socket))
			if err != nil {
				return fmt.Errorf("fetch from %s: %w", socket, err)
			}
			var infos []chainInfo
			for _, svid := range resp.SVIDs {
				infos = append(infos, describeChain(svid.Certificates, svid.Hint))
			}
			if write != "" && len(resp.SVIDs) > 0 {
				if err := writeSVID(write, resp.SVIDs[0], resp.Bundles); err != nil {
					return err
				}
			}
			if out.format == "json" {
				return printStructured(s.out, "json", infos)
			}
			for i, ci := range infos {
				if i > 0 {
					fmt.Fprintln(s.out)
				}
				printChain(s.out, ci, time.Now())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", defaultSocket(), "Workload API unix socket of the agent")
	cmd.Flags().StringVar(&write, "write", "", "write svid.pem, key.pem and bundle.pem of the first SVID to this directory")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	out.register(cmd, "text", "text", "json")
	return cmd
}

func writeSVID(dir string, svid *x509svid.SVID, bundles *x509bundle.Set) error {
	certs, key, err := svid.Marshal()
	if err != nil {
		return fmt.Errorf("encode SVID: %w", err)
	}
	b, ok := bundles.Get(svid.ID.TrustDomain())
	if !ok {
		return fmt.Errorf("no bundle for trust domain %s", svid.ID.TrustDomain())
	}
	bundlePEM, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("encode bundle: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "key.pem"), key, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "svid.pem"), certs, 0o644); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "bundle.pem"), bundlePEM, 0o644)
}

func newCertRevokeCmd(s *streams) *cobra.Command {
	var (
		cf  clientFlags
		req adminapi.RevokeRequest
	)
	cmd := &cobra.Command{
		Use:   "revoke (--spiffe-id ID | --serial N)",
		Short: "Revoke one certificate by serial, or every SVID of a SPIFFE ID issued until now",
		Long: `Add to the revocation list, which agents receive within moments over their
sync stream. --serial revokes one certificate (decimal, or hex as printed by
` + "`cert inspect`" + `). --spiffe-id revokes every SVID of that ID issued until now; agents
holding one replace it at once, so revoke by SPIFFE ID after a key compromise and
delete the Workload to stop issuance altogether. Revoking a node's ID
(spiffe://TD/trustmesh/node/NAME) cuts that agent off until it joins again
with a new token.`,
		Example: `  trustmesh cert revoke --serial 2c:1f:...:9a --reason "key leaked" --data-dir ./data
  trustmesh cert revoke --spiffe-id spiffe://example.org/ns/default/sa/web --data-dir ./data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (req.Serial == "") == (req.SPIFFEID == "") {
				return errors.New("give exactly one of --serial and --spiffe-id")
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var resp adminapi.Revocation
			if err := c.Do(cmd.Context(), http.MethodPost, adminapi.PathRevocations, nil, req, &resp); err != nil {
				return err
			}
			what := resp.SPIFFEID
			if resp.Serial != "" {
				what = "serial " + resp.Serial
			}
			fmt.Fprintf(s.out, "revoked %s at %s\n", what, resp.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&req.SPIFFEID, "spiffe-id", "", "revoke every SVID of this SPIFFE ID issued until now")
	cmd.Flags().StringVar(&req.Serial, "serial", "", "revoke the certificate with this serial")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why (recorded in the audit log)")
	cf.register(cmd)
	return cmd
}
