package cluster

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPKIIssuesCertificatesTheCATrusts(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	caPEM, err := os.ReadFile(p.caFile())
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(caPEM))

	tests := []struct {
		name    string
		issue   func() (pair, error)
		usage   x509.ExtKeyUsage
		cn      string
		orgs    []string
		dnsName string
		ip      net.IP
	}{
		{
			name:  "a node client certificate names the node and the nodes group",
			issue: func() (pair, error) { return p.client("kubelet-client", "system:node:n1", "system:nodes") },
			usage: x509.ExtKeyUsageClientAuth, cn: "system:node:n1", orgs: []string{"system:nodes"},
		},
		{
			name: "a serving certificate is valid for its names and addresses",
			issue: func() (pair, error) {
				return p.serving("apiserver", "kube-apiserver", []string{"kubernetes.default"}, []net.IP{net.IPv4(10, 96, 0, 1)})
			},
			usage: x509.ExtKeyUsageServerAuth, cn: "kube-apiserver", dnsName: "kubernetes.default", ip: net.IPv4(10, 96, 0, 1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := tt.issue()
			require.NoError(t, err)
			kp, err := tls.LoadX509KeyPair(files.cert, files.key)
			require.NoError(t, err, "certificate and key match")
			cert, err := x509.ParseCertificate(kp.Certificate[0])
			require.NoError(t, err)
			assert.Equal(t, tt.cn, cert.Subject.CommonName)
			if tt.orgs != nil {
				assert.Equal(t, tt.orgs, cert.Subject.Organization)
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.usage}, DNSName: tt.dnsName})
			require.NoError(t, err)
			if tt.ip != nil {
				require.NoError(t, cert.VerifyHostname(tt.ip.String()))
			}
		})
	}
}

func TestServiceAccountKeysAreAMatchingPair(t *testing.T) {
	p, err := newPKI(t.TempDir())
	require.NoError(t, err)
	private, public, err := p.serviceAccountKeys()
	require.NoError(t, err)
	privPEM, err := os.ReadFile(private)
	require.NoError(t, err)
	pubPEM, err := os.ReadFile(public)
	require.NoError(t, err)
	privBlock, _ := pem.Decode(privPEM)
	pubBlock, _ := pem.Decode(pubPEM)
	require.NotNil(t, privBlock)
	require.NotNil(t, pubBlock)
	key, err := x509.ParsePKCS8PrivateKey(privBlock.Bytes)
	require.NoError(t, err)
	pub, err := x509.ParsePKIXPublicKey(pubBlock.Bytes)
	require.NoError(t, err)
	assert.True(t, key.(*ecdsa.PrivateKey).PublicKey.Equal(pub), "sa.pub is sa.key's public half")
}
