package license

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/atomicfile"
)

// keyIDPattern restricts key ids to what is safe as a file name and in logs.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidKeyID reports whether kid may name a portal key.
func ValidKeyID(kid string) bool { return keyIDPattern.MatchString(kid) }

// publicKeySuffix names keyring files: one "<kid>.pem" file per portal key.
const publicKeySuffix = ".pem"

// Keyring holds the portal public keys a PBX trusts, by key id. A Keyring is
// immutable once built, so one value may be shared by every goroutine.
type Keyring struct {
	keys    map[string]ed25519.PublicKey
	revoked map[string]bool
	source  string     // where the keys came from, for error messages
	trust   *trustInfo // where each key's trust comes from (trust.go); nil when built in code
}

// NewKeyring builds a keyring from public keys by id.
func NewKeyring(keys map[string]ed25519.PublicKey) (*Keyring, error) {
	kr := &Keyring{keys: make(map[string]ed25519.PublicKey, len(keys)), source: "the keyring"}
	for kid, pub := range keys {
		if !ValidKeyID(kid) {
			return nil, fmt.Errorf("keyring: invalid key id %q", kid)
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keyring: key %q: not an Ed25519 public key", kid)
		}
		kr.keys[kid] = slices.Clone(pub)
	}
	if len(kr.keys) == 0 {
		return nil, errors.New("keyring: no portal keys")
	}
	return kr, nil
}

// ErrNoKeys is a keyring folder that holds no public key.
var ErrNoKeys = errors.New("no portal public key to trust")

// LoadKeyring reads every "<kid>.pem" file of dir, each a PEM "PUBLIC KEY"
// block holding an Ed25519 key. Other files are ignored, so a README may sit
// beside the keys.
func LoadKeyring(dir string) (*Keyring, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading portal keyring: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey)
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, publicKeySuffix) {
			continue
		}
		kid := strings.TrimSuffix(name, publicKeySuffix)
		path := filepath.Join(dir, name)
		if !ValidKeyID(kid) {
			return nil, fmt.Errorf("portal keyring: %s: the file name is not a valid key id (letters, digits, '.', '_', '-')", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading portal keyring: %w", err)
		}
		pub, err := ParsePublicKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("portal keyring: %s: %w", path, err)
		}
		keys[kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("portal keyring %s holds no <kid>%s files: %w", dir, publicKeySuffix, ErrNoKeys)
	}
	kr, err := NewKeyring(keys)
	if err != nil {
		return nil, err
	}
	kr.source = dir
	return kr, nil
}

// KeyIDs returns the trusted, unrevoked key ids in sorted order.
func (k *Keyring) KeyIDs() []string {
	ids := make([]string, 0, len(k.keys))
	for kid := range k.keys {
		if k.revokedReason(kid) == "" {
			ids = append(ids, kid)
		}
	}
	slices.Sort(ids)
	return ids
}

// WithRevoked returns a keyring that no longer trusts the given key ids, as
// a licence's revoked key list demands: roots, announced and configured keys
// alike, and the keys a revoked root announced. The receiver is unchanged.
func (k *Keyring) WithRevoked(kids []string) *Keyring {
	if len(kids) == 0 {
		return k
	}
	out := &Keyring{keys: k.keys, source: k.source, trust: k.trust, revoked: make(map[string]bool, len(k.revoked)+len(kids))}
	for kid := range k.revoked {
		out.revoked[kid] = true
	}
	for _, kid := range kids {
		out.revoked[kid] = true
	}
	return out
}

// lookup returns the key for kid, or a reason it is not trusted.
func (k *Keyring) lookup(kid string) (ed25519.PublicKey, string) {
	if why := k.revokedReason(kid); why != "" {
		return nil, why
	}
	pub, ok := k.keys[kid]
	if !ok {
		return nil, fmt.Sprintf("portal key %q is not in %s (trusted: %s)", kid, k.source, strings.Join(k.KeyIDs(), ", "))
	}
	return pub, ""
}

// ParsePublicKeyPEM decodes a PEM "PUBLIC KEY" block holding an Ed25519 key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New(`no PEM "PUBLIC KEY" block`)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("decoding public key: %w", err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want Ed25519", key)
	}
	return pub, nil
}

// MarshalPublicKeyPEM encodes an Ed25519 public key as a PEM "PUBLIC KEY" block.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WriteKeyringFile writes pub into dir as "<kid>.pem", the layout LoadKeyring reads.
func WriteKeyringFile(dir, kid string, pub ed25519.PublicKey) error {
	if !ValidKeyID(kid) {
		return fmt.Errorf("writing keyring: invalid key id %q", kid)
	}
	data, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("writing keyring: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, kid+publicKeySuffix), data, 0o644)
}

// GenerateSigner makes a new portal signing key with the given key id.
func GenerateSigner(kid string) (*Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating signing key: %w", err)
	}
	return NewSigner(kid, priv)
}

// signerKeyIDHeader carries the key id inside the private key's PEM block.
const signerKeyIDHeader = "Key-Id"

// SaveSigner writes the signer's private key to path, mode 0600.
func SaveSigner(path string, s *Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil {
		return fmt.Errorf("encoding signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{
		Type:    "PRIVATE KEY",
		Headers: map[string]string{signerKeyIDHeader: s.kid},
		Bytes:   der,
	})
	return atomicfile.WriteFile(path, data, 0o600)
}

// LoadSigner reads a private key written by SaveSigner.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: no PEM \"PRIVATE KEY\" block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T, want Ed25519", path, key)
	}
	return NewSigner(block.Headers[signerKeyIDHeader], priv)
}
