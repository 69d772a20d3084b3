// SPDX-License-Identifier: LGPL-2.1-or-later
// A KMS v2 client on Debian's grpc-go (golang-google-grpc-dev) and protobuf
// 1.5 runtime, built offline in GOPATH mode from /usr/share/gocode. It dials
// the Unix socket as kube-apiserver's KMS v2 gRPC service does (insecure
// credentials, a context dialer on "unix", a deadline per call) and checks
// the API server's own limits on every response. The messages of
// kms/api.proto are written out by hand with protowire (no protoc-gen-go is
// needed), the field numbers being those of k8s.io/kms/apis/v2/api.proto.
// Prints "PASS what" / "FAIL what" lines (tests/integration/kms.sh numbers
// them as TAP).
//
// client.go SOCKET KEY KEKCTL [-bench SECONDS]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

type message interface {
	marshal() []byte
	unmarshal([]byte) error
}

// codec: gRPC's "proto" codec for the hand-written messages
type codec struct{}

func (codec) Marshal(v interface{}) ([]byte, error) { return v.(message).marshal(), nil }
func (codec) Unmarshal(b []byte, v interface{}) error { return v.(message).unmarshal(b) }
func (codec) Name() string                            { return "proto" }

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

// fields calls f for every field; bytes fields get their value, others are skipped
func fields(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return protowire.ParseError(m)
			}
			if err := f(num, v); err != nil {
				return err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return protowire.ParseError(m)
		}
		b = b[m:]
	}
	return nil
}

func mapEntry(v []byte) (string, []byte, error) {
	var k string
	var val []byte
	err := fields(v, func(num protowire.Number, x []byte) error {
		if num == 1 {
			k = string(x)
		} else if num == 2 {
			val = append([]byte(nil), x...)
		}
		return nil
	})
	return k, val, err
}

type statusRequest struct{}

func (statusRequest) marshal() []byte          { return nil }
func (*statusRequest) unmarshal([]byte) error { return nil }

type statusResponse struct{ Version, Healthz, KeyID string }

func (m *statusResponse) marshal() []byte { return nil }
func (m *statusResponse) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			m.Version = string(v)
		case 2:
			m.Healthz = string(v)
		case 3:
			m.KeyID = string(v)
		}
		return nil
	})
}

type encryptRequest struct {
	Plaintext []byte
	UID       string
}

func (m *encryptRequest) marshal() []byte {
	return appendBytes(appendBytes(nil, 1, m.Plaintext), 2, []byte(m.UID))
}
func (m *encryptRequest) unmarshal([]byte) error { return errors.New("unused") }

type encryptResponse struct {
	Ciphertext  []byte
	KeyID       string
	Annotations map[string][]byte
}

func (m *encryptResponse) marshal() []byte { return nil }
func (m *encryptResponse) unmarshal(b []byte) error {
	m.Annotations = map[string][]byte{}
	return fields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			m.Ciphertext = append([]byte(nil), v...)
		case 2:
			m.KeyID = string(v)
		case 3:
			k, val, err := mapEntry(v)
			if err != nil {
				return err
			}
			m.Annotations[k] = val
		}
		return nil
	})
}

type decryptRequest struct {
	Ciphertext  []byte
	UID, KeyID  string
	Annotations map[string][]byte
}

func (m *decryptRequest) marshal() []byte {
	b := appendBytes(appendBytes(appendBytes(nil, 1, m.Ciphertext), 2, []byte(m.UID)), 3, []byte(m.KeyID))
	for k, v := range m.Annotations {
		e := appendBytes(appendBytes(nil, 1, []byte(k)), 2, v)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}
func (m *decryptRequest) unmarshal([]byte) error { return errors.New("unused") }

type decryptResponse struct{ Plaintext []byte }

func (m *decryptResponse) marshal() []byte { return nil }
func (m *decryptResponse) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, v []byte) error {
		if num == 1 {
			m.Plaintext = append([]byte(nil), v...)
		}
		return nil
	})
}

var failed int

func check(ok bool, what string, detail ...interface{}) bool {
	if ok {
		fmt.Println("PASS " + what)
	} else {
		failed++
		fmt.Println("FAIL " + what)
		if len(detail) > 0 {
			fmt.Println("#   ", fmt.Sprint(detail...))
		}
	}
	return ok
}

var label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// k8s.io/apimachinery IsFullyQualifiedDomainName, as the API server checks annotation keys
func fqdn(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		if len(p) > 63 || !label.MatchString(p) {
			return false
		}
	}
	return true
}

type client struct{ conn *grpc.ClientConn }

func (c *client) call(method string, in, out message) error {
	// kube-apiserver gives each KMS call a deadline of a few seconds
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.conn.Invoke(ctx, "/v2.KeyManagementService/"+method, in, out, grpc.ForceCodec(codec{}))
}

func (c *client) status() (*statusResponse, error) {
	out := &statusResponse{}
	err := c.call("Status", &statusRequest{}, out)
	if err == nil {
		check(out.Version == "v2", "Status: version v2", out.Version)
		// the API server checks key_id only on a healthy answer
		if out.Healthz == "ok" {
			check(out.KeyID != "" && len(out.KeyID) <= 1024, "Status: key_id within 1 KiB")
		}
	}
	return out, err
}

func (c *client) encrypt(pt []byte) (*encryptResponse, error) {
	out := &encryptResponse{}
	err := c.call("Encrypt", &encryptRequest{Plaintext: pt, UID: newUID()}, out)
	if err == nil {
		check(len(out.Ciphertext) > 0 && len(out.Ciphertext) <= 1024, "Encrypt: ciphertext within 1 KiB")
		check(out.KeyID != "" && len(out.KeyID) <= 1024, "Encrypt: key_id within 1 KiB")
		total := 0
		for k, v := range out.Annotations {
			check(fqdn(k), "Encrypt: annotation key "+k+" is a FQDN")
			total += len(k) + len(v)
		}
		check(total <= 32*1024, "Encrypt: annotations within 32 KiB")
	}
	return out, err
}

func (c *client) decrypt(e *encryptResponse) ([]byte, error) {
	out := &decryptResponse{}
	// a Decrypt carries another uid than its Encrypt, as kube-apiserver's do
	err := c.call("Decrypt", &decryptRequest{Ciphertext: e.Ciphertext, UID: newUID(), KeyID: e.KeyID,
		Annotations: e.Annotations}, out)
	return out.Plaintext, err
}

func newUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func kekctl(path string, args ...string) bool {
	out, err := exec.Command(path, args...).CombinedOutput()
	return check(err == nil, "kekctl "+strings.Join(args, " "), string(out))
}

func main() {
	if len(os.Args) < 4 {
		fmt.Println("usage: client SOCKET KEY KEKCTL [-bench SECONDS]")
		os.Exit(2)
	}
	sock, key, kc := os.Args[1], os.Args[2], os.Args[3]
	conn, err := grpc.Dial(sock, grpc.WithInsecure(),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		fmt.Println("FAIL dial", err)
		os.Exit(1)
	}
	defer conn.Close()
	c := &client{conn}
	seed := make([]byte, 32)
	rand.Read(seed)

	if len(os.Args) == 6 && os.Args[4] == "-bench" {
		secs, _ := strconv.ParseFloat(os.Args[5], 64)
		n, t0 := 0, time.Now()
		for time.Since(t0).Seconds() < secs {
			e := &encryptResponse{}
			d := &decryptResponse{}
			if c.call("Encrypt", &encryptRequest{Plaintext: seed, UID: "b"}, e) != nil ||
				c.call("Decrypt", &decryptRequest{Ciphertext: e.Ciphertext, UID: "b", KeyID: e.KeyID}, d) != nil {
				fmt.Println("FAIL bench call")
				os.Exit(1)
			}
			n++
		}
		fmt.Printf("# bench: %.0f Encrypt+Decrypt/s through the plugin (grpc-go)\n", float64(n)/time.Since(t0).Seconds())
		return
	}

	// 1. Status, Encrypt of a 32-byte seed, Decrypt
	st, err := c.status()
	check(err == nil && st.Healthz == "ok", "1: Status healthy", err, st)
	e1, err := c.encrypt(seed)
	check(err == nil, "1: Encrypt of a 32-byte seed", err)
	check(err == nil && e1.KeyID == st.KeyID, "1: Encrypt names Status's key_id")
	pt, err := c.decrypt(e1)
	check(err == nil && bytes.Equal(pt, seed), "1: Decrypt returns the seed", err)

	// 2. rotate: a new key_id, the old ciphertext still decrypts
	if kekctl(kc, "rotate", key) {
		st2, err := c.status()
		check(err == nil && st2.KeyID != st.KeyID, "2: rotate changes Status's key_id", st.KeyID, " -> ", st2.KeyID)
		e2, err := c.encrypt(seed)
		check(err == nil && e2.KeyID == st2.KeyID, "2: Encrypt uses the new key_id")
		pt, err := c.decrypt(e1)
		check(err == nil && bytes.Equal(pt, seed), "2: the old ciphertext still decrypts", err)
	}

	// 3. disable: unhealthy and Decrypt refused; the time from the disable to the first refusal
	t0 := time.Now()
	if kekctl(kc, "disable", key) {
		var derr error
		for i := 0; i < 100; i++ {
			if _, derr = c.decrypt(e1); derr != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Printf("# disable to first Decrypt refusal: %d ms\n", time.Since(t0).Milliseconds())
		check(status.Code(derr) == codes.FailedPrecondition, "3: disable: Decrypt refused FAILED_PRECONDITION", derr)
		st3, err := c.status()
		check(err != nil || st3.Healthz != "ok", "3: disable: Status unhealthy", st3.Healthz)
		_, err = c.encrypt(seed)
		check(status.Code(err) == codes.FailedPrecondition, "3: disable: Encrypt refused", err)
	}

	// 4. enable: service resumes
	if kekctl(kc, "enable", key) {
		st4, err := c.status()
		check(err == nil && st4.Healthz == "ok", "4: enable: Status healthy", err)
		pt, err := c.decrypt(e1)
		check(err == nil && bytes.Equal(pt, seed), "4: enable: Decrypt works again", err)
		_, err = c.encrypt(seed)
		check(err == nil, "4: enable: Encrypt works again", err)
	}
	if failed > 0 {
		os.Exit(1)
	}
}
