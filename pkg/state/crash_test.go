package state

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The crash test runs this test binary again as a child that saves in a loop
// and kills it with SIGKILL at a random point of a Save.
const (
	crashDirEnv   = "PBX_STATE_CRASH_CHILD" // the state folder; its presence makes TestCrashChild run
	crashStartEnv = "PBX_STATE_CRASH_START" // the first Seq the child saves
)

type crashDoc struct {
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// crashPad derives about 64 KiB from seq, so a document whose pad does not
// match its Seq (a torn or mixed-up write) is caught.
func crashPad(seq int) string {
	unit := fmt.Sprintf("%016x.", uint64(seq)*0x9e3779b97f4a7c15)
	return strings.Repeat(unit, (64<<10)/len(unit))
}

func openCrash(dir string) (*File[crashDoc], error) {
	return Open[crashDoc](Options{Dir: dir, Name: name, Version: 1})
}

// TestCrashChild is the child side of TestCrash. It does nothing in a
// normal test run. It saves Seq = start, start+1, ... and prints
// "saved <Seq>" after each Save returns, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child process of TestCrash")
	}
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		fmt.Printf("error: bad %s: %v\n", crashStartEnv, err)
		os.Exit(2)
	}
	f, err := openCrash(dir)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(2)
	}
	// Bounded, so a child whose parent vanished cannot run forever.
	for seq := start; seq < start+100_000; seq++ {
		if err := f.Save(crashDoc{Seq: seq, Pad: crashPad(seq)}); err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: the line is in the pipe when this returns.
		if _, err := fmt.Printf("saved %d\n", seq); err != nil {
			os.Exit(2)
		}
	}
	os.Exit(0)
}

func TestCrash(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the child")
	}
	iterations := 200
	if testing.Short() {
		iterations = 30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	// Two lanes, each with its own folder, run side by side: most of an
	// iteration is the child's start-up and fsync waits, so this halves the
	// wall time without changing what each lane checks.
	const lanes = 2
	for lane := range lanes {
		t.Run(fmt.Sprintf("lane%d", lane), func(t *testing.T) {
			t.Parallel()
			crashLane(t, iterations/lanes, rand.New(rand.NewPCG(seed, uint64(lane))))
		})
	}
}

// crashLane kills a series of children saving into one folder, so that
// each child rotates over the files its killed predecessor left.
func crashLane(t *testing.T, iterations int, rng *rand.Rand) {
	dir := filepath.Join(t.TempDir(), "state")
	f, err := openCrash(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	next := 1
	saveTime := 5 * time.Millisecond // a first guess, refined from the children's pace
	var old, inflight, recovered int
	for i := range iterations {
		acked := runCrashChild(t, dir, next, rng, &saveTime)

		got, info, err := f.Load()
		if err != nil {
			t.Fatalf("iteration %d: Load after the kill: %v", i, err)
		}
		if got.Pad != crashPad(got.Seq) {
			t.Fatalf("iteration %d: loaded Seq %d with a pad that does not match it", i, got.Seq)
		}
		switch got.Seq {
		case acked:
			old++
		case acked + 1:
			inflight++
		default:
			t.Fatalf("iteration %d: loaded Seq %d; the child acknowledged %d, so want %d or %d",
				i, got.Seq, acked, acked, acked+1)
		}
		if info.Recovered {
			// A kill only interrupts the process; the kernel still
			// completes every write it accepted. So the only reason to
			// recover is the window between Save's two renames.
			if info.RecoveredReason != name+": missing" {
				t.Fatalf("iteration %d: recovered because %q; after SIGKILL only a missing file is possible", i, info.RecoveredReason)
			}
			recovered++
		}
		next = got.Seq + 1
	}
	t.Logf("%d kills in %v (a Save takes about %v): %d loaded the last acknowledged save (%d of them from .prev), %d the save in flight; last Seq %d",
		iterations, time.Since(start).Round(time.Millisecond), saveTime.Round(10*time.Microsecond), old, recovered, inflight, next-1)

	// Each child's Open clears the temp files of the one killed before it.
	temps, _ := filepath.Glob(filepath.Join(dir, name+".tmp-*"))
	if len(temps) > 1 {
		t.Errorf("%d temp files piled up: %q", len(temps), temps)
	}
}

// runCrashChild starts a child saving from Seq next, lets it acknowledge
// a random number of saves, kills it at a random point of a later one, and
// returns the last Seq it acknowledged. saveTime is the running estimate of
// how long one Save takes, which places the kill.
func runCrashChild(t *testing.T, dir string, next int, rng *rand.Rand, saveTime *time.Duration) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(next))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(out)
	acked := next - 1
	var lastLine time.Time
	readLine := func() bool {
		line, err := lines.ReadString('\n')
		if err != nil {
			return false
		}
		now := time.Now()
		seq, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "saved ")
		n, err := strconv.Atoi(seq)
		if !ok || err != nil || n != acked+1 {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child printed %q after acknowledging %d; stderr:\n%s", line, acked, stderr.Bytes())
		}
		if n > next { // the gap between two lines is one Save
			*saveTime = (*saveTime*7 + now.Sub(lastLine)) / 8
		}
		acked, lastLine = n, now
		return true
	}

	for range 1 + rng.IntN(15) {
		if !readLine() {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child stopped after acknowledging %d; stderr:\n%s", acked, stderr.Bytes())
		}
	}
	// The child is now inside its next Save. Spin, without sleeping, for a
	// random 0..2000 two-thousandths of a Save, so that the kill lands
	// anywhere in it: a fixed count of bare iterations would cover only
	// its first fraction of a millisecond, when the temp file is written.
	wait := *saveTime * time.Duration(rng.IntN(2001)) / 2000
	for time.Since(lastLine) < wait {
		runtime.Gosched()
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Lines printed before the kill but not yet read are acknowledged too.
	for readLine() {
	}
	cmd.Wait() // reports "signal: killed", as intended
	if bytes.Contains(stderr.Bytes(), []byte("DATA RACE")) {
		t.Fatalf("race in the child:\n%s", stderr.Bytes())
	}
	return acked
}
