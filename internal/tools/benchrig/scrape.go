package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// scrapeAccept is what Prometheus 2 asks for when it scrapes.
const scrapeAccept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"

// scrapeStats sums up repeated scrapes of one /metrics.
type scrapeStats struct {
	lat     []time.Duration
	wire    int // bytes of the body as sent (gzip, as Prometheus asks)
	text    int // bytes of the body once unzipped
	samples int // lines that are not comments
}

// scraper scrapes as Prometheus does: keep-alive, gzip asked for.
type scraper struct{ c *http.Client }

func newScraper() scraper {
	// DisableCompression: the rig asks for gzip itself, to see the body as
	// it crossed the wire.
	return scraper{c: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
}

// scrape fetches url once and returns its figures.
func (s scraper) scrape(ctx context.Context, url string) (time.Duration, scrapeStats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, scrapeStats{}, err
	}
	req.Header.Set("Accept", scrapeAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	t0 := time.Now()
	resp, err := s.c.Do(req)
	if err != nil {
		return 0, scrapeStats{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, scrapeStats{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, scrapeStats{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	st := scrapeStats{wire: len(body)}
	text := body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return 0, scrapeStats{}, err
		}
		if text, err = io.ReadAll(zr); err != nil {
			return 0, scrapeStats{}, err
		}
	}
	st.text = len(text)
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); len(line) > 0 && line[0] != '#' {
			st.samples++
		}
	}
	return d, st, nil
}

// compareScrapes scrapes a and b n times each, alternating, so that both
// see the same machine.
func compareScrapes(ctx context.Context, n int, a, b string) (scrapeStats, scrapeStats, error) {
	s := newScraper()
	var sa, sb scrapeStats
	for range n {
		for _, x := range []struct {
			url string
			st  *scrapeStats
		}{{a, &sa}, {b, &sb}} {
			d, st, err := s.scrape(ctx, x.url)
			if err != nil {
				return sa, sb, err
			}
			lat := append(x.st.lat, d)
			*x.st = st
			x.st.lat = lat
		}
	}
	return sa, sb, nil
}
