// Command footprint finds where the bytes of pbx-agent go: the size of
// the daemon's binary by module, and the floor each chosen library sets,
// as the size and resident memory of a program that links it and does
// nothing.
//
//	go run ./internal/tools/footprint -update docs/performance.md,internal/tools/benchrig/performance.md.tmpl
//
// It prints a section of Markdown; with -update it puts the section
// between the footprint markers of each file instead. It runs in the
// module's folder (`make footprint`) and takes about a minute.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- footprint: begin -->"
	endMarker   = "<!-- footprint: end -->"
)

func main() {
	update := flag.String("update", "", "comma-separated `FILES` whose footprint section to replace, instead of printing it")
	idle := flag.Duration("idle", 2*time.Second, "how long each do-nothing program idles before its memory is read")
	runs := flag.Int("runs", 3, "runs of each program; the median counts")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *update, *idle, *runs); err != nil {
		fmt.Fprintf(os.Stderr, "footprint: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, update string, idle time.Duration, runs int) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: give at least 1", runs)
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	full, stripped := filepath.Join(tmp, "pbx-agent.full"), filepath.Join(tmp, "pbx-agent")
	if err := goBuild(ctx, root, full, "./cmd/pbx-agent", false); err != nil {
		return err
	}
	if err := goBuild(ctx, root, stripped, "./cmd/pbx-agent", true); err != nil {
		return err
	}
	st, err := os.Stat(stripped)
	if err != nil {
		return err
	}
	rows, total, err := sizeByModule(full)
	if err != nil {
		return err
	}
	floors, err := measureFloors(ctx, root, idle, runs)
	if err != nil {
		return err
	}
	var section bytes.Buffer
	writeSection(&section, sectionData{
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), GoVersion: goVersion(ctx, root),
		Stripped: st.Size(), Loaded: total, Rows: rows, Floors: floors, Idle: idle, Runs: runs,
	})
	if update == "" {
		_, err := os.Stdout.Write(section.Bytes())
		return err
	}
	for _, path := range strings.Split(update, ",") {
		if err := replaceSection(path, section.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// moduleRoot is the folder of the go.mod the go command finds from here.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, goCommand(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the module: run footprint from the repository (make footprint)")
	}
	return filepath.Dir(gomod), nil
}

func goVersion(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, goCommand(), "env", "GOVERSION")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "go (version unknown)"
	}
	return strings.TrimSpace(string(out))
}

// replaceSection puts section between the footprint markers of the file
// at path, markers kept.
func replaceSection(path string, section []byte) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin := bytes.Index(b, []byte(beginMarker))
	end := bytes.Index(b, []byte(endMarker))
	if begin < 0 || end < begin {
		return fmt.Errorf("%s: no %q line followed by %q to put the section between; add them where it belongs", path, beginMarker, endMarker)
	}
	var out bytes.Buffer
	out.Write(b[:begin+len(beginMarker)])
	out.WriteString("\n")
	out.Write(section)
	out.Write(b[end:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}
