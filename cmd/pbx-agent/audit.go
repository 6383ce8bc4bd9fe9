package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/audit"
)

func newAuditCmd(a *app) *cobra.Command {
	var (
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print the audit log: licence revisions, state changes, activation, deletion",
		Long: "Asks the running daemon for its audit log (GET /v1/audit; members of the pbx-agent\n" +
			"group may read it): every licence revision accepted or refused, every state change\n" +
			"and why, activations, deletions, and telephony stops and starts, oldest first.\n" +
			"Times are the licence clock's, in UTC. The log is kept when the licence is wiped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (everything) or more", limit)
			}
			return a.audit(cmd.Context(), asJSON, limit)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the local API's JSON document")
	cmd.Flags().IntVarP(&limit, "limit", "n", 0, "print only the last `N` events (0: all)")
	return cmd
}

func (a *app) audit(ctx context.Context, asJSON bool, limit int) error {
	c, err := a.apiClient()
	if err != nil {
		return err
	}
	path := "/v1/audit"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var raw []byte
	if err := c.do(ctx, "GET", path, nil, &raw); err != nil {
		return exitFor(err)
	}
	if asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
			return fmt.Errorf("the audit log of pbx-agent is not JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := a.stdout.Write(buf.Bytes())
		return err
	}
	var log apitype.AuditLog
	if err := json.Unmarshal(raw, &log); err != nil {
		return fmt.Errorf("the audit log of pbx-agent: %w", err)
	}
	return printAudit(a.stdout, log.Events)
}

// printAudit prints one event a line: time, kind, then its fields. A state
// change reads "from → to: why".
func printAudit(w io.Writer, events []audit.Event) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "The audit log is empty.")
		return err
	}
	width := 0
	for _, e := range events {
		width = max(width, len(e.Kind))
	}
	for _, e := range events {
		ts := "-"
		if !e.Time.IsZero() {
			ts = e.Time.UTC().Format(time.RFC3339)
		}
		if _, err := fmt.Fprintf(w, "%-20s  %-*s  %s\n", ts, width, e.Kind, describe(e)); err != nil {
			return err
		}
	}
	return nil
}

func describe(e audit.Event) string {
	f := e.Fields
	if e.Kind == "state.changed" {
		if from, ok := f["from"].(string); ok {
			to, _ := f["to"].(string)
			why, _ := f["why"].(string)
			return fmt.Sprintf("%s → %s: %s", from, to, why)
		}
	}
	if e.Kind == "admission.denied" {
		if profile, ok := f["profile"].(string); ok {
			reason, _ := f["reason"].(string)
			d := fmt.Sprintf("%s ×%s: %s", profile, value(f["count"]), reason)
			if r, ok := f["repeats"].(float64); ok && r > 0 {
				d += fmt.Sprintf(" (%s more denied since the last record)", value(r))
			}
			if peer, ok := f["peer"].(string); ok {
				d += " [" + peer + "]"
			}
			return d
		}
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+value(f[k]))
	}
	return strings.Join(parts, " ")
}

// value renders a field: numbers plainly, strings quoted when they hold
// spaces or quotes.
func value(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" || strings.ContainsAny(v, " \"=\t\n") {
			return strconv.Quote(v)
		}
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
