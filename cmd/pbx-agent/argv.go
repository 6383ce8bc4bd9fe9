package main

import (
	"errors"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// errKeyOnCommandLine refuses a PBX key given as an argument. It does not
// repeat the key: cobra's "unknown command" would print it back, into
// terminal scrollback, logs and support tickets.
var errKeyOnCommandLine = errors.New("a PBX key was given on the command line, where other users of this machine can read it, and was not used: " +
	"pass it on standard input (pbx-agent activate < key) or with --key-file FILE")

// keyInArgs reports whether an argument, or the value of a --flag=value,
// looks like a PBX key.
func keyInArgs(args []string) bool {
	for _, arg := range args {
		if strings.HasPrefix(arg, "-") {
			_, value, ok := strings.Cut(arg, "=")
			if !ok {
				continue
			}
			arg = value
		}
		if looksLikeKey(arg) {
			return true
		}
	}
	return false
}

// looksLikeKey reports whether s, cleaned as a pasted key is, reads as a
// PBX key or a large piece of one: a JWS, whose header is JSON, so its
// base64url starts with "eyJ" ({"), long enough not to be a word, in the
// JWS alphabet alone. Versions (7.02.20250609.3), paths and profile names
// never match.
func looksLikeKey(s string) bool {
	s = license.NormalizeKey(s)
	if len(s) < 40 || !strings.HasPrefix(s, "eyJ") {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.' || r == '=' || r == '+' || r == '/') {
			return false
		}
	}
	return true
}
