package main

import (
	"fmt"
	"io"
	"time"
)

// topModules is how many rows of the size table are shown; the rest are
// summed into one.
const topModules = 15

type sectionData struct {
	Date, GoVersion  string
	Stripped, Loaded int64
	Rows             []share
	Floors           []floor
	Idle             time.Duration
	Runs             int
}

func mib(b int64) string { return fmt.Sprintf("%.2f", float64(b)/(1<<20)) }

func signedMiB(b int64) string { return fmt.Sprintf("%+.2f", float64(b)/(1<<20)) }

// writeSection writes the footprint section of docs/performance.md.
func writeSection(w io.Writer, d sectionData) {
	fmt.Fprintf(w, "## Where the bytes go\n\n")
	fmt.Fprintf(w, "Measured on %s with %s by `make footprint` (internal/tools/footprint), apart from `make bench`; that command rewrites this section here and in the template.\n\n", d.Date, d.GoVersion)
	fmt.Fprintf(w, "**The daemon's binary by module.** pbx-agent built as the .deb builds it (`CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'`) is %s MiB. "+
		"The table sums the symbols of the same build without `-s -w` by the module of their package, over the %s MiB of sections it loads from the file; "+
		"the function tables (the pclntab: each function's name, lines and stack maps) and the type descriptors and strings of .rodata, which the symbols do not name, are rows of their own. "+
		"The last column adds to a module its part of the function tables, in proportion to its machine code: an estimate.\n\n", mib(d.Stripped), mib(d.Loaded))
	var tables, text int64
	for _, r := range d.Rows {
		text += r.Text
		if r.Name == tablesRow {
			tables = r.Bytes
		}
	}
	withTables := func(r share) string {
		if r.Text == 0 || text == 0 {
			return ""
		}
		return mib(r.Bytes + tables*r.Text/text)
	}
	fmt.Fprintf(w, "| module | MiB | share | with its part of the function tables (est.) |\n| --- | ---: | ---: | ---: |\n")
	var rest share
	restN := 0
	for i, r := range d.Rows {
		if i >= topModules {
			rest.Bytes += r.Bytes
			rest.Text += r.Text
			restN++
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.1f %% | %s |\n", r.Name, mib(r.Bytes), 100*float64(r.Bytes)/float64(d.Loaded), withTables(r))
	}
	if restN > 0 {
		fmt.Fprintf(w, "| %d other modules | %s | %.1f %% | %s |\n", restN, mib(rest.Bytes), 100*float64(rest.Bytes)/float64(d.Loaded), withTables(rest))
	}
	fmt.Fprintf(w, "\n")
	if s := codecShare(d.Rows); s != "" {
		fmt.Fprintf(w, "%s\n\n", s)
	}

	fmt.Fprintf(w, "**The floor of each library.** A program that imports one library's packages (those the daemon imports) with a blank import, and sleeps, "+
		"built like the daemon, in the module so that each library is the version go.mod names; it carries the library's package initialisation and all it reaches, "+
		"the least the library costs however it is used. Memory is read from /proc/PID/status after %s idle, the median of %d runs. "+
		"*Over empty* is the difference from the empty program; the libraries share dependencies (the standard library's TLS and HTTP, protobuf), so the differences do not add up to the row of all of them.\n\n", d.Idle, d.Runs)
	fmt.Fprintf(w, "| program | binary MiB | over empty | VmRSS MiB | over empty | RssAnon MiB | VmHWM MiB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var empty floor
	for _, f := range d.Floors {
		if f.Name == "empty program" {
			empty = f
		}
	}
	for _, f := range d.Floors {
		if f.BuildFailed != nil {
			fmt.Fprintf(w, "| %s | n/a (%v) | | | | | |\n", f.Name, f.BuildFailed)
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", f.Name, mib(f.File), signedMiB(f.File-empty.File),
			mib(f.RSS), signedMiB(f.RSS-empty.RSS), mib(f.Anon), mib(f.HWM))
	}
	fmt.Fprintf(w, "\n")
	for _, f := range d.Floors {
		if f.Name == "all nine" && f.BuildFailed == nil {
			fmt.Fprintf(w, "The daemon's binary is %s MiB larger than the program that links all nine: its own code, and the parts of the libraries that only its calls reach.\n\n", mib(d.Stripped-f.File))
		}
	}
}

// codecShare says what viper's TOML and dotenv codecs weigh in the
// daemon: viper's package initialisation makes a viper whose codec
// registry names them, so they are linked whatever the program reads.
func codecShare(rows []share) string {
	var toml, dotenv int64
	for _, r := range rows {
		switch r.Name {
		case "github.com/pelletier/go-toml/v2":
			toml = r.Bytes
		case "github.com/subosito/gotenv":
			dotenv = r.Bytes
		}
	}
	if toml == 0 && dotenv == 0 {
		return "viper's TOML and dotenv codecs are not in the binary."
	}
	return fmt.Sprintf("viper's TOML codec (github.com/pelletier/go-toml/v2, %.0f KiB) and dotenv codec (github.com/subosito/gotenv, %.0f KiB) are in the binary although the daemon reads YAML only: "+
		"viper's own package initialisation makes a viper with its default codec registry, whose lookup names every format, so the linker keeps them whatever registry the daemon passes (`viper.WithCodecRegistry`).",
		float64(toml)/1024, float64(dotenv)/1024)
}
