package proc

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		opts    Options
		want    string
		wantErr string
	}{
		{name: "stdout", argv: []string{"/bin/echo", "hello"}, want: "hello\n"},
		{name: "no shell", argv: []string{"/bin/echo", "$HOME", "; true"}, want: "$HOME ; true\n"},
		{name: "stdin", argv: []string{"/bin/cat"}, opts: Options{Stdin: []byte("in")}, want: "in"},
		{name: "env", argv: []string{"/bin/sh", "-c", "echo $PBX_X"}, opts: Options{Env: []string{"PBX_X=42"}}, want: "42\n"},
		{name: "exit status with stderr", argv: []string{"/bin/sh", "-c", "echo first >&2; echo second >&2; exit 4"}, wantErr: "exit status 4: first"},
		{name: "timeout kills the group", argv: []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, opts: Options{Timeout: 100 * time.Millisecond},
			wantErr: "no answer within 100ms: killed"},
		{name: "limit", argv: []string{"/bin/sh", "-c", "yes"}, opts: Options{Limit: 1 << 10}, wantErr: "printed more than 1 KiB"},
		{name: "limit with a process that goes on", argv: []string{"/bin/sh", "-c", "head -c 4096 /dev/zero; sleep 30"}, opts: Options{Limit: 1 << 10, Timeout: 200 * time.Millisecond},
			wantErr: "printed more than 1 KiB"},
		{name: "no program", argv: nil, wantErr: "no program"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Timeout == 0 {
				tt.opts.Timeout = 10 * time.Second
			}
			start := time.Now()
			out, err := Run(context.Background(), tt.argv, tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
			} else if err != nil || string(out) != tt.want {
				t.Fatalf("Run = %q, %v; want %q", out, err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v: the process group outlived the run", d)
			}
		})
	}
}
