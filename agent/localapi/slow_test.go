package localapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/pbx-agent/pbx-agent/agent/localapi"
)

// dial opens a raw connection to the harness's listener via.
func (h *harness) dial(t *testing.T, via string) net.Conn {
	t.Helper()
	network, addr := "unix", h.sock
	if via == "tcp" {
		network, addr = "tcp", h.tcpAddr
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// slowClient sends head at once, then dribbles body a byte every 50 ms,
// and reports on closed when the server has closed the connection.
type slowClient struct {
	conn   net.Conn
	closed chan struct{}
}

func startSlow(t *testing.T, c net.Conn, head, dribble string) *slowClient {
	s := &slowClient{conn: c, closed: make(chan struct{})}
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-s.closed:
				return
			case <-time.After(50 * time.Millisecond): // the client's pace, not a wait for a condition
			}
			if _, err := c.Write([]byte{dribble[i%len(dribble)]}); err != nil {
				return
			}
		}
	}()
	go func() {
		io.Copy(io.Discard, c) // returns when the server closes
		close(s.closed)
	}()
	return s
}

// TestSlowClientsCutOff runs slowloris clients on both listeners, some
// dribbling their headers and some their body, while well-behaved clients
// ask for the status: these are answered at once, and the slow ones are
// disconnected by the server's timeouts (shortened here).
func TestSlowClientsCutOff(t *testing.T) {
	for _, via := range []string{"unix", "tcp"} {
		t.Run(via, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				SetTimeouts(c, Timeouts{ReadHeader: 3 * time.Second, Read: 4 * time.Second, Idle: time.Hour})
			})
			limit := MaxConnsUnix
			if via == "tcp" {
				limit = MaxConnsTCP
			}
			// Nearly every slot, half dribbling headers, half a body.
			var slow []*slowClient
			for i := range limit - 4 {
				c := h.dial(t, via)
				if i%2 == 0 {
					slow = append(slow, startSlow(t, c, "GET /v1/status HTTP/1.1\r\nHost: local\r\nX-Slow: ", "abcdefgh"))
				} else {
					// A JSON string that never ends, within a declared length.
					head := "POST /v1/admission HTTP/1.1\r\nHost: local\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"profile\": \""
					slow = append(slow, startSlow(t, c, head, "a"))
				}
			}
			for i := range 20 {
				if a := h.do(t, request{via: via, method: "GET", path: "/v1/status"}); a.status != 200 {
					t.Fatalf("well-behaved request %d: %d %s", i, a.status, a.body)
				}
			}
			cut := 0
			for _, s := range slow {
				select {
				case <-s.closed:
					cut++
				default:
				}
			}
			// Meanwhile: some slow clients at least were still connected
			// (on a loaded machine the first ones may have been cut).
			if cut == len(slow) {
				t.Errorf("every slow client was cut off before the well-behaved ones were served: the test shows nothing")
			}
			deadline := time.After(15 * time.Second)
			for i, s := range slow {
				select {
				case <-s.closed:
				case <-deadline:
					t.Fatalf("slow client %d still connected 15 s on: the server's timeouts did not cut it off", i)
				}
			}
			if n := len(h.backend.Admissions()); n != 0 {
				t.Errorf("the backend saw %d admissions from bodies never finished", n)
			}
		})
	}
}

// TestIdleConnectionsDoNotStarve fills every slot with idle keep-alive
// connections (their request answered): a new client is served at once,
// because the server closes an idle connection for it rather than wait for
// the idle timeout (an hour here).
func TestIdleConnectionsDoNotStarve(t *testing.T) {
	for _, via := range []string{"unix", "tcp"} {
		t.Run(via, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				SetTimeouts(c, Timeouts{ReadHeader: time.Hour, Read: time.Hour, Idle: time.Hour})
			})
			limit := MaxConnsUnix
			host := "local"
			if via == "tcp" {
				limit, host = MaxConnsTCP, h.tcpAddr
			}
			var idle []net.Conn
			for i := range limit {
				c := h.dial(t, via)
				fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", host)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("keep-alive connection %d: %v %v", i, resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.Close {
					t.Fatalf("the server closed keep-alive connection %d itself", i)
				}
				idle = append(idle, c)
			}
			// Every slot holds an idle connection. A new client is served.
			if a := h.do(t, request{via: via, method: "GET", path: "/v1/status"}); a.status != 200 {
				t.Fatalf("new client: %d", a.status)
			}
			// An idle connection (the longest idle) was closed for it.
			closed := make(chan int, len(idle))
			for i, c := range idle {
				go func() {
					if _, err := c.Read(make([]byte, 1)); err == io.EOF {
						closed <- i
					}
				}()
			}
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				t.Error("no idle connection was closed by the server")
			}
			for _, c := range idle {
				c.Close() // ends the readers
			}
		})
	}
}
