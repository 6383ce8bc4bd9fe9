package main

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/internal/statusfixture"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("1000x2000, 390x2400")
	if want := []size{{1000, 2000}, {390, 2400}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseSizes = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "1000", "1000x", "x2000", "100x2000", "1000x2000,", "1e3x2000", "-390x2400"} {
		if _, err := parseSizes(bad); err == nil || !strings.Contains(err.Error(), "WIDTHxHEIGHT") {
			t.Errorf("parseSizes(%q) = %v; want an error naming the form", bad, err)
		}
	}
}

// TestServeShowsTheCase: the page Chromium is pointed at is the API's own,
// showing the case's status, with its Content-Security-Policy.
func TestServeShowsTheCase(t *testing.T) {
	var stopped statusfixture.Case
	for _, c := range statusfixture.Cases() {
		if c.Name == "stopped" {
			stopped = c
		}
	}
	url, stop, err := serve(context.Background(), stopped.Status)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="state">stopped</span>`) ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("GET %s: %d, CSP %q, body:\n%s", url, resp.StatusCode, resp.Header.Get("Content-Security-Policy"), body)
	}
}
