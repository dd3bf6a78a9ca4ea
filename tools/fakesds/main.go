// Command fakesds is a TEST-ONLY stand-in for istio-agent's secret discovery service.
//
// Why it exists: the clusters istiod sends a sidecar for ISTIO_MUTUAL (and auto-mTLS) read their
// certificate and trust bundle over SDS from a cluster named "sds-grpc", which in a real pod is
// istio-agent on a unix socket. An upstream Envoy has no istio-agent, so without an SDS server those
// clusters stay "warming" forever and no endpoint is ever used. This server answers the two names
// istiod asks for -- "default" (workload certificate chain + key) and "ROOTCA" (trust bundle) --
// from a throw-away CA generated at start. No rotation, no identity checks: never use it outside tests.
//
// -pem-dir writes the same PEMs to disk so test backends can terminate the mTLS the sidecar originates.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
)

const secretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// material is the PEM-encoded identity served to every proxy.
type material struct{ chain, key, root []byte }

type sdsServer struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	pems    material
	mu      sync.Mutex
	version int
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// secretFor maps istio-agent's two well-known resource names onto the generated material.
func (s *sdsServer) secretFor(name string) *tlsv3.Secret {
	if name == "ROOTCA" {
		return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{
			ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(s.pems.root)}}}
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: inline(s.pems.chain), PrivateKey: inline(s.pems.key)}}}
}

func (s *sdsServer) nextVersion() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	return fmt.Sprint(s.version)
}

// StreamSecrets answers each new subscription once; a request naming only secrets already sent is
// an ACK (or a NACK, which is logged) and needs no response -- the secrets never change.
func (s *sdsServer) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	sent := map[string]bool{}
	for {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if req.GetErrorDetail() != nil {
			log.Printf("NACK for %v: %s", req.GetResourceNames(), req.GetErrorDetail().GetMessage())
		}
		var (
			resources []*anypb.Any
			unseen    bool
		)
		for _, name := range req.GetResourceNames() {
			packed, err := anypb.New(s.secretFor(name))
			if err != nil {
				return err
			}
			resources = append(resources, packed)
			unseen = unseen || !sent[name]
			sent[name] = true
		}
		if !unseen {
			continue
		}
		version := s.nextVersion()
		log.Printf("serving %s (version %s)", strings.Join(req.GetResourceNames(), ","), version)
		resp := &discoveryv3.DiscoveryResponse{VersionInfo: version, Nonce: version, TypeUrl: secretTypeURL, Resources: resources}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func encode(kind string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}) }

// generate makes a one-day CA and a workload certificate carrying the SPIFFE identity as URI SAN.
func generate(identity string) (material, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return material{}, err
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{"cluster.local"}, CommonName: "fakesds test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return material{}, err
	}
	spiffe, err := url.Parse(identity)
	if err != nil {
		return material{}, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return material{}, err
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), URIs: []*url.URL{spiffe}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return material{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		return material{}, err
	}
	return material{chain: encode("CERTIFICATE", leafDER), key: encode("EC PRIVATE KEY", keyDER), root: encode("CERTIFICATE", caDER)}, nil
}

func main() {
	listen := flag.String("listen", "", "unix:///path/to/socket or 127.0.0.1:port (required)")
	identity := flag.String("spiffe", "spiffe://cluster.local/ns/default/sa/default", "workload identity (URI SAN)")
	pemDir := flag.String("pem-dir", "", "also write cert-chain.pem, key.pem and root-cert.pem into this directory")
	flag.Parse()
	if *listen == "" {
		log.Fatal("-listen is required")
	}
	pems, err := generate(*identity)
	if err != nil {
		log.Fatal(err)
	}
	if *pemDir != "" {
		files := map[string][]byte{"cert-chain.pem": pems.chain, "key.pem": pems.key, "root-cert.pem": pems.root}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(*pemDir, name), data, 0o600); err != nil {
				log.Fatal(err)
			}
		}
	}
	network, address := "tcp", *listen
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		network, address = "unix", path
		_ = os.Remove(path)
	}
	lis, err := net.Listen(network, address)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(srv, &sdsServer{pems: pems})
	log.Printf("fakesds (TEST ONLY) listening on %s %s", network, address)
	log.Fatal(srv.Serve(lis))
}
