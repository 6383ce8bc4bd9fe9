package main

import "testing"

// TestBehindWords: the local clock's lag reads in words, whatever form the
// daemon sends it in.
func TestBehindWords(t *testing.T) {
	for in, want := range map[string]string{
		"144h0m0s": "6 days",
		"3h0m0s":   "3 hours",
		"5m0s":     "5 minutes",
		"6 days":   "6 days", // already words
	} {
		if got := behindWords(in); got != want {
			t.Errorf("behindWords(%q) = %q, want %q", in, got, want)
		}
	}
}
