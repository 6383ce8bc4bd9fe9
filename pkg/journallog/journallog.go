// Package journallog is a slog.Handler that writes to the systemd journal
// through its native protocol, for a daemon whose stderr systemd connects
// to the journal: each level becomes the journal's PRIORITY (so
// `journalctl -p warning` finds warnings and errors), each attribute a
// field of its own (`journalctl ERR=...`, `-o verbose`), and the message
// carries no timestamp, which the journal keeps already.
//
// MESSAGE is the record's message followed by its attributes as slog's
// text handler writes them, so `journalctl -u` shows the whole line as it
// did on stderr, less the time and the level.
package journallog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
)

// Sender writes one entry to the journal; journal.Send is the real one.
type Sender func(message string, priority journal.Priority, fields map[string]string) error

// Options configure New.
type Options struct {
	// Level is the minimum level logged; nil is slog.LevelInfo.
	Level slog.Leveler
	// Identifier is the entry's SYSLOG_IDENTIFIER (journalctl -t), as
	// systemd sets it for stderr; "" leaves it out.
	Identifier string
	// Fallback receives an entry the journal refused (its socket gone, a
	// full buffer): the message with an sd-daemon "<N>" priority prefix,
	// which journald reads on a stderr stream. nil drops such entries.
	Fallback io.Writer
}

// Handler is the journal's slog.Handler. Its derived handlers (WithAttrs,
// WithGroup) share its formatting buffer and lock.
type Handler struct {
	send Sender
	opts Options
	fmt  *formatter
	text slog.Handler // the attributes as text, into fmt.buf
	// fields are the attributes of WithAttrs, as journal fields.
	fields []field
	prefix string // the open groups, as a field-name prefix ("GROUP_")
}

type field struct{ name, value string }

// formatter is the buffer the text handlers write into, one record at a time.
type formatter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

var _ slog.Handler = (*Handler)(nil)

// New returns a handler that sends each record to the journal with send.
func New(send Sender, opts Options) *Handler {
	if opts.Level == nil {
		opts.Level = slog.LevelInfo
	}
	f := &formatter{}
	text := slog.NewTextHandler(&f.buf, &slog.HandlerOptions{
		Level: slog.LevelDebug - 100, // filtering is Enabled's
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 {
				switch a.Key {
				case slog.TimeKey, slog.LevelKey, slog.MessageKey:
					return slog.Attr{} // the journal has them
				}
			}
			return a
		},
	})
	return &Handler{send: send, opts: opts, fmt: f, text: text}
}

// Enabled reports whether level is logged.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.opts.Level.Level()
}

// Handle sends r to the journal.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	h.fmt.mu.Lock()
	h.fmt.buf.Reset()
	err := h.text.Handle(ctx, r)
	attrs := strings.TrimSpace(h.fmt.buf.String())
	h.fmt.mu.Unlock()
	if err != nil {
		return fmt.Errorf("journal entry: %w", err)
	}
	msg := r.Message
	if attrs != "" {
		msg += " " + attrs
	}

	fields := make(map[string]string, len(h.fields)+r.NumAttrs()+1)
	if h.opts.Identifier != "" {
		fields["SYSLOG_IDENTIFIER"] = h.opts.Identifier
	}
	for _, f := range h.fields {
		fields[f.name] = f.value
	}
	r.Attrs(func(a slog.Attr) bool {
		addField(fields, h.prefix, a)
		return true
	})
	pri := Priority(r.Level)
	if err := h.send(msg, pri, fields); err != nil {
		if h.opts.Fallback == nil {
			return fmt.Errorf("journal: %w", err)
		}
		_, werr := fmt.Fprintf(h.opts.Fallback, "<%d>%s\n", pri, strings.ReplaceAll(msg, "\n", " "))
		return werr
	}
	return nil
}

// WithAttrs returns a handler whose records carry attrs too.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.text = h.text.WithAttrs(attrs)
	m := map[string]string{}
	for _, a := range attrs {
		addField(m, h.prefix, a)
	}
	h2.fields = append(h.fields[:len(h.fields):len(h.fields)], toFields(m)...)
	return &h2
}

// WithGroup returns a handler whose later attributes are in group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.text = h.text.WithGroup(name)
	h2.prefix = h.prefix + name + "_"
	return &h2
}

// Priority is the journal priority of a slog level: errors 3 (err),
// warnings 4 (warning), information 6 (info), debug 7 (debug); levels in
// between take the priority of the level below them.
func Priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// reserved are the journal's fields that the handler sets or that mean
// something to journalctl; an attribute of that name is renamed, so a log
// line never forges its priority or its source.
var reserved = map[string]bool{
	"MESSAGE": true, "MESSAGE_ID": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"SYSLOG_FACILITY": true, "SYSLOG_PID": true, "CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true,
	"ERRNO": true, "INVOCATION_ID": true, "UNIT": true, "USER_UNIT": true,
}

// addField adds attribute a, within the groups of prefix, to fields.
func addField(fields map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, ga := range v.Group() {
			addField(fields, p, ga)
		}
		return
	}
	if a.Key == "" {
		return
	}
	fields[FieldName(prefix+a.Key)] = v.String()
}

// FieldName is key as a journal field name: upper case letters, digits
// and underscores, starting with a letter, at most 64 bytes; a reserved
// name gets the prefix SLOG_.
func FieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name[0] < 'A' || name[0] > 'Z' || reserved[name] {
		name = "SLOG_" + strings.TrimLeft(name, "_")
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

func toFields(m map[string]string) []field {
	out := make([]field, 0, len(m))
	for k, v := range m {
		out = append(out, field{k, v})
	}
	return out
}

// IsJournalStream reports whether f is the stream systemd connected to
// the journal: JOURNAL_STREAM (stream, the variable's value) names the
// device and inode of f, as systemd.exec(5) says to check. A child whose
// stderr was redirected inherits the variable but fails the check.
func IsJournalStream(stream string, f *os.File) (bool, error) {
	if stream == "" {
		return false, nil
	}
	devS, inoS, ok := strings.Cut(stream, ":")
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return false, fmt.Errorf("JOURNAL_STREAM=%q: not DEVICE:INODE", stream)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("JOURNAL_STREAM: fstat %s: %w", f.Name(), err)
	}
	return uint64(st.Dev) == dev && st.Ino == ino, nil
}
