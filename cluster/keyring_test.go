package cluster

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFileMode writes a test file with exactly mode perm, whatever the umask.
func writeFileMode(t *testing.T, path, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("key lengths %d and %d, want 32", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Fatal("two generated keys are equal")
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	for _, size := range []int{16, 24, 32} {
		key := bytes.Repeat([]byte{byte(size)}, size)
		path := filepath.Join(t.TempDir(), "gossip.key")
		if err := WriteKeyFile(path, key); err != nil {
			t.Fatalf("WriteKeyFile(%d bytes): %v", size, err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("key file mode %04o, want 0600", perm)
		}
		got, err := LoadKeyFile(path)
		if err != nil {
			t.Fatalf("LoadKeyFile: %v", err)
		}
		if !bytes.Equal(got, key) {
			t.Errorf("loaded key %x, want %x", got, key)
		}
	}
}

func TestEncodeKey(t *testing.T) {
	key := []byte{0xfb, 0xff, 0x00, 0x01}
	if got, want := EncodeKey(key), "+/8AAQ=="; got != want {
		t.Errorf("EncodeKey = %q, want %q (standard base64)", got, want)
	}
}

func TestLoadKeyFile(t *testing.T) {
	good := EncodeKey(bytes.Repeat([]byte{7}, 32))
	tests := []struct {
		name    string
		content string
		perm    fs.FileMode
		wantErr []string // substrings; nil means success
	}{
		{"plain", good, 0o600, nil},
		{"trailing newline", good + "\n", 0o600, nil},
		{"trailing whitespace", good + " \t\r\n\n", 0o600, nil},
		{"leading whitespace", "\n  " + good, 0o600, nil},
		{"read-only owner", good, 0o400, nil},
		{"AES-128", EncodeKey(make([]byte, 16)), 0o600, nil},
		{"AES-192", EncodeKey(make([]byte, 24)), 0o600, nil},
		{"group readable", good, 0o640, []string{"group or others", "chmod 600", "0640"}},
		{"world readable", good, 0o644, []string{"chmod 600"}},
		{"other writable only", good, 0o602, []string{"chmod 600"}},
		{"group executable", good, 0o610, []string{"chmod 600"}},
		{"bad base64", "not*base64!", 0o600, []string{"base64"}},
		{"url base64", strings.NewReplacer("+", "-", "/", "_").Replace(EncodeKey([]byte{0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb, 0xff, 0xfe, 0xfb})), 0o600, []string{"base64"}},
		{"too short", EncodeKey(make([]byte, 8)), 0o600, []string{"8 bytes", "16, 24 or 32"}},
		{"one byte short", EncodeKey(make([]byte, 31)), 0o600, []string{"31 bytes"}},
		{"too long", EncodeKey(make([]byte, 33)), 0o600, []string{"33 bytes"}},
		{"empty", "", 0o600, []string{"empty", "raftlb keygen"}},
		{"only whitespace", " \n", 0o600, []string{"empty"}},
		{"huge", strings.Repeat("A", 5000), 0o600, []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gossip.key")
			writeFileMode(t, path, tt.content, tt.perm)
			key, err := LoadKeyFile(path)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("LoadKeyFile: %v", err)
				}
				if n := len(key); n != 16 && n != 24 && n != 32 {
					t.Fatalf("key of %d bytes", n)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyFile succeeded, want an error mentioning %q", tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file %s", msg, path)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not mention %q", msg, s)
				}
			}
			if strings.Contains(msg, good) {
				t.Errorf("error %q leaks the key", msg)
			}
		})
	}
}

func TestLoadKeyFileMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.key")
	_, err := LoadKeyFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "raftlb keygen") {
		t.Fatalf("LoadKeyFile(missing) = %v, want an error naming the file and the keygen command", err)
	}
}

func TestLoadKeyFileDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadKeyFile(dir) = %v, want a not-a-regular-file error", err)
	}
}

func TestWriteKeyFileRefusesOverwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.key")
	first := bytes.Repeat([]byte{1}, 32)
	if err := WriteKeyFile(path, first); err != nil {
		t.Fatal(err)
	}
	err := WriteKeyFile(path, bytes.Repeat([]byte{2}, 32))
	if err == nil || !strings.Contains(err.Error(), "already exists") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second WriteKeyFile = %v, want an already-exists error naming the file", err)
	}
	got, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, first) {
		t.Fatal("the refused write changed the key file")
	}
}

func TestWriteKeyFileRejectsBadLength(t *testing.T) {
	for _, n := range []int{0, 1, 15, 17, 31, 33, 64} {
		path := filepath.Join(t.TempDir(), "gossip.key")
		if err := WriteKeyFile(path, make([]byte, n)); err == nil {
			t.Errorf("WriteKeyFile(%d bytes) succeeded", n)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("WriteKeyFile(%d bytes) left a file behind (stat: %v)", n, err)
		}
	}
}

func TestWriteKeyFileIsStandardBase64(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gossip.key")
	key := bytes.Repeat([]byte{0xfb}, 32)
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), base64.StdEncoding.EncodeToString(key)+"\n"; got != want {
		t.Errorf("file holds %q, want %q", got, want)
	}
}

// TestLoadKeyRing: a key file may hold the keys of a rotation, one per
// line; the first encrypts. Comments and blank lines are skipped; a
// repeated key, too many keys, or a bad line is an error naming the line.
func TestLoadKeyRing(t *testing.T) {
	var keys []string
	for range MaxGossipKeys + 1 {
		k, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, EncodeKey(k))
	}
	write := func(text string) string {
		path := filepath.Join(t.TempDir(), "gossip.key")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ring, err := LoadKeyRing(write("# rotating\n" + keys[1] + "\n\n  " + keys[0] + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ring) != 2 || EncodeKey(ring[0]) != keys[1] || EncodeKey(ring[1]) != keys[0] {
		t.Errorf("ring %d keys, want the two in file order", len(ring))
	}
	if first, err := LoadKeyFile(write(keys[1] + "\n" + keys[0] + "\n")); err != nil || EncodeKey(first) != keys[1] {
		t.Errorf("LoadKeyFile: %v, want the first key", err)
	}
	for _, tc := range []struct{ text, want string }{
		{keys[0] + "\n" + keys[0] + "\n", "line 2: the same key twice"},
		{strings.Join(keys, "\n"), "holds 5 keys, at most 4"},
		{keys[0] + "\nnot base64!\n", "line 2: not a base64 key"},
		{"# only a comment\n", "is empty"},
	} {
		if _, err := LoadKeyRing(write(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadKeyRing(%q): %v, want %q", tc.text, err, tc.want)
		} else if strings.Contains(err.Error(), keys[0]) {
			t.Errorf("the error quotes a key: %v", err)
		}
	}
}
