package users

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// HTTP counts users with a GET to a WMS endpoint that answers an Answer
// with a 2xx status.
type HTTP struct {
	url     string
	timeout time.Duration
	client  *http.Client
}

// NewHTTP returns the source that asks rawURL (http or https) and waits at
// most timeout for the whole answer.
func NewHTTP(rawURL string, timeout time.Duration) (*HTTP, error) {
	u, err := url.Parse(rawURL)
	switch {
	case rawURL == "":
		return nil, errors.New("users.http.url: empty")
	case err != nil:
		return nil, fmt.Errorf("users.http.url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		return nil, fmt.Errorf("users.http.url: %q is not an http(s) URL", rawURL)
	case timeout <= 0:
		return nil, fmt.Errorf("users.http.timeout: %v: must be positive", timeout)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return &HTTP{url: rawURL, timeout: timeout, client: &http.Client{
		Transport: tr,
		// A redirect elsewhere is a misconfiguration: say so.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

func (h *HTTP) String() string {
	u, err := url.Parse(h.url)
	if err != nil {
		return "http"
	}
	// Never show credentials in logs or status.
	u.User = nil
	u.RawQuery = ""
	return "http " + u.String()
}

// Count asks the endpoint and parses its answer.
func (h *HTTP) Count(ctx context.Context) (license.Counts, error) {
	c, err := h.count(ctx)
	if err != nil {
		return nil, fmt.Errorf("users source %s: %w", h, err)
	}
	return c, nil
}

func (h *HTTP) count(ctx context.Context) (license.Counts, error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer within %v", h.timeout)
		}
		// The error names the URL, query (a token, perhaps) included: keep
		// only its cause, String() names the source.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("answered %s", resp.Status)
	}
	return ParseAnswer(body)
}

var _ Source = (*HTTP)(nil)
