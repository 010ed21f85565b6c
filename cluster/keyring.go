package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
)

// GossipKeySize is the size of a key made by GenerateKey: 32 bytes selects
// AES-256 in memberlist. 16 and 24 bytes (AES-128, AES-192) are accepted
// when loading, for keys made by other tools.
const GossipKeySize = 32

// maxKeyFileSize bounds what LoadKeyFile reads: a base64 AES-256 key is 44
// characters, so anything much larger is the wrong file.
const maxKeyFileSize = 4096

// GenerateKey returns a fresh random gossip key of GossipKeySize bytes.
func GenerateKey() ([]byte, error) {
	key := make([]byte, GossipKeySize)
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, fmt.Errorf("generate gossip key: %w", err)
	}
	return key, nil
}

// EncodeKey returns key as standard base64, the form key files hold.
func EncodeKey(key []byte) string {
	return base64.StdEncoding.EncodeToString(key)
}

func checkKeyLength(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip key is %d bytes, want 16, 24 or 32 (AES-128, AES-192 or AES-256)", len(key))
}

// checkPrivate refuses a secret file that group or others may access: a
// readable key lets anyone on the machine join or read the cluster.
func checkPrivate(path string, mode fs.FileMode) error {
	if !mode.IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := mode.Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s is accessible by group or others (mode %04o); restrict it with: chmod 600 %s", path, perm, path)
	}
	return nil
}

// MaxGossipKeys bounds a key file's keyring: the key in use and those a
// rotation adds or retires.
const MaxGossipKeys = 4

// LoadKeyFile reads a gossip key file and returns its first key, the one
// that encrypts (LoadKeyRing).
func LoadKeyFile(path string) ([]byte, error) {
	keys, err := LoadKeyRing(path)
	if err != nil {
		return nil, err
	}
	return keys[0], nil
}

// LoadKeyRing reads a gossip key file: one base64 key of 16, 24 or 32
// bytes per line (WriteKeyFile writes one), blank lines and # comments
// ignored. The first key encrypts; every key decrypts, which is how a key
// is rotated without a restart: add the new key as a second line on every
// node and reload, move it first and reload, drop the old one and reload.
// It refuses a file that group or others may access.
func LoadKeyRing(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("gossip key file %s does not exist (create one with: raftlb keygen)", path)
		}
		return nil, fmt.Errorf("open gossip key file: %w", err)
	}
	defer f.Close()
	// Stat the open file, not the path, so the check and the read see the
	// same file.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	if err := checkPrivate(path, info.Mode()); err != nil {
		return nil, fmt.Errorf("gossip key file %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read gossip key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("gossip key file %s is larger than %d bytes; it should hold one base64 key", path, maxKeyFileSize)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(data), "\n") {
		text := strings.TrimSpace(line)
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			// The decoder's error quotes an offset, never the key itself.
			return nil, fmt.Errorf("gossip key file %s, line %d: not a base64 key: %w", path, i+1, err)
		}
		if err := checkKeyLength(key); err != nil {
			return nil, fmt.Errorf("gossip key file %s, line %d: %w", path, i+1, err)
		}
		for _, k := range keys {
			if string(k) == string(key) {
				return nil, fmt.Errorf("gossip key file %s, line %d: the same key twice", path, i+1)
			}
		}
		keys = append(keys, key)
	}
	switch {
	case len(keys) == 0:
		return nil, fmt.Errorf("gossip key file %s is empty (create a key with: raftlb keygen)", path)
	case len(keys) > MaxGossipKeys:
		return nil, fmt.Errorf("gossip key file %s holds %d keys, at most %d (the key in use first, then those being rotated in or out)", path, len(keys), MaxGossipKeys)
	}
	return keys, nil
}

// WriteKeyFile writes key, base64-encoded, to a new file of mode 0600. It
// never overwrites: replacing the key of a running cluster cuts every node
// off from the others, so the operator must remove the old file on purpose.
func WriteKeyFile(path string, key []byte) error {
	if err := checkKeyLength(key); err != nil {
		return err
	}
	return writeNewFile(path, []byte(EncodeKey(key)+"\n"), 0o600, "gossip key file")
}

// writeNewFile creates path with mode perm and writes data to it, refusing
// to replace an existing file. A partly written file is removed.
func writeNewFile(path string, data []byte, perm fs.FileMode, what string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s %s already exists; refusing to overwrite it (move it away first if you mean to replace it)", what, path)
		}
		return fmt.Errorf("create %s: %w", what, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s %s: %w", what, path, cerr)
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// The umask can only clear bits; Chmod makes the mode exact.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("set mode of %s %s: %w", what, path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s %s: %w", what, path, err)
	}
	return nil
}
