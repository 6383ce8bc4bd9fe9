package portalsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Client calls a running portal's admin API.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8780
	HTTP    *http.Client // nil: a client with a 30 s timeout
}

// NewClient returns a client for the portal at baseURL.
func NewClient(baseURL string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// AdminError is a refusal from the admin API.
type AdminError struct {
	Status  int
	Code    string // protocol.Code* or Code*
	Message string
}

func (e *AdminError) Error() string { return e.Message }

// CreatePBX creates a PBX and returns it with its key.
func (c *Client) CreatePBX(ctx context.Context, in CreatePBXRequest) (*CreatePBXResponse, error) {
	var out CreatePBXResponse
	return &out, c.do(ctx, http.MethodPost, "/admin/v1/pbxs", in, &out)
}

// ListPBXs returns every PBX, deleted ones included.
func (c *Client) ListPBXs(ctx context.Context) ([]PBX, error) {
	var out PBXList
	return out.PBXs, c.do(ctx, http.MethodGet, "/admin/v1/pbxs", nil, &out)
}

// PBX returns a PBX by name or id.
func (c *Client) PBX(ctx context.Context, ref string) (*PBX, error) {
	var out PBX
	return &out, c.do(ctx, http.MethodGet, pbxPath(ref, ""), nil, &out)
}

// ChangeLicenses merges new counts into a PBX's licence.
func (c *Client) ChangeLicenses(ctx context.Context, ref string, in LicenseChange) (*LicenseChangeResult, error) {
	var out LicenseChangeResult
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/licenses"), in, &out)
}

// Rebind releases a PBX from its appliance, so that the next activation binds it.
func (c *Client) Rebind(ctx context.Context, ref string) (*RebindResult, error) {
	var out RebindResult
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/rebind"), nil, &out)
}

// Resync lifts the refusal of a cloned appliance: the heartbeat chain
// starts again from the bound appliance's next heartbeat.
func (c *Client) Resync(ctx context.Context, ref string) (*PBX, error) {
	var out PBX
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/resync"), nil, &out)
}

// RotateKey retires the portal's signing key and revokes it in every live
// PBX's licence.
func (c *Client) RotateKey(ctx context.Context) (*KeyRotation, error) {
	var out KeyRotation
	return &out, c.do(ctx, http.MethodPost, "/admin/v1/keys/rotate", nil, &out)
}

// Suspend suspends a PBX's licence: its appliance lapses.
func (c *Client) Suspend(ctx context.Context, ref string) (*SuspendResult, error) {
	var out SuspendResult
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/suspend"), nil, &out)
}

// Resume lifts a suspension.
func (c *Client) Resume(ctx context.Context, ref string) (*SuspendResult, error) {
	var out SuspendResult
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/resume"), nil, &out)
}

// Delete marks a PBX deleted.
func (c *Client) Delete(ctx context.Context, ref string) (*PBX, error) {
	var out PBX
	return &out, c.do(ctx, http.MethodDelete, pbxPath(ref, ""), nil, &out)
}

// Clock returns the portal's clock.
func (c *Client) Clock(ctx context.Context) (*Clock, error) {
	var out Clock
	return &out, c.do(ctx, http.MethodGet, "/admin/v1/clock", nil, &out)
}

// AdvanceClock moves the portal's clock by d (negative moves it back).
func (c *Client) AdvanceClock(ctx context.Context, d time.Duration) (*Clock, error) {
	var out Clock
	return &out, c.do(ctx, http.MethodPost, "/admin/v1/clock/advance", ClockAdvance{By: Duration(d)}, &out)
}

// SetClock sets the portal's clock to t.
func (c *Client) SetClock(ctx context.Context, t time.Time) (*Clock, error) {
	var out Clock
	return &out, c.do(ctx, http.MethodPut, "/admin/v1/clock", ClockSet{Now: t}, &out)
}

// Faults returns the fault settings.
func (c *Client) Faults(ctx context.Context) (*Faults, error) {
	var out Faults
	return &out, c.do(ctx, http.MethodGet, "/admin/v1/fault", nil, &out)
}

// PatchFaults changes the settings named in patch (a JSON object with
// Faults' field names) and keeps the others.
func (c *Client) PatchFaults(ctx context.Context, patch map[string]any) (*Faults, error) {
	var out Faults
	return &out, c.do(ctx, http.MethodPatch, "/admin/v1/fault", patch, &out)
}

// SetFaults replaces every fault setting.
func (c *Client) SetFaults(ctx context.Context, f Faults) (*Faults, error) {
	var out Faults
	return &out, c.do(ctx, http.MethodPut, "/admin/v1/fault", f, &out)
}

// ClearFaults turns every fault off.
func (c *Client) ClearFaults(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/admin/v1/fault", nil, nil)
}

// QueueCommand signs and queues a command for a PBX.
func (c *Client) QueueCommand(ctx context.Context, ref string, in CommandRequest) (*CommandView, error) {
	var out CommandView
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/commands"), in, &out)
}

// Commands lists a PBX's queued and recent commands.
func (c *Client) Commands(ctx context.Context, ref string) ([]CommandView, error) {
	var out CommandList
	return out.Commands, c.do(ctx, http.MethodGet, pbxPath(ref, "/commands"), nil, &out)
}

// Command returns one command; with wait > 0 the portal holds the answer
// until the command's result arrives or wait passes.
func (c *Client) Command(ctx context.Context, ref, id string, wait time.Duration) (*CommandView, error) {
	path := pbxPath(ref, "/commands/"+url.PathEscape(id))
	cc := c
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.String())
		if c.HTTP == nil {
			cc = &Client{BaseURL: c.BaseURL, HTTP: &http.Client{Timeout: wait + 30*time.Second}}
		}
	}
	var out CommandView
	return &out, cc.do(ctx, http.MethodGet, path, nil, &out)
}

// OfflineActivate answers an offline activation request (armoured or
// bare) for the PBX ref with a licence file to carry back.
func (c *Client) OfflineActivate(ctx context.Context, ref, request string) (*OfflineLicence, error) {
	var out OfflineLicence
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/offline/activate"), OfflineExchange{File: request}, &out)
}

// OfflineRenew answers a usage report carried from the PBX ref with a
// renewed licence file.
func (c *Client) OfflineRenew(ctx context.Context, ref, report string) (*OfflineLicence, error) {
	var out OfflineLicence
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/offline/renew"), OfflineExchange{File: report}, &out)
}

func pbxPath(ref, suffix string) string {
	return "/admin/v1/pbxs/" + url.PathEscape(ref) + suffix
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return fmt.Errorf("portal URL %q: %w", c.BaseURL, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the portal simulator at %s (is `pbx-portal-sim serve` running? set --portal or PBX_PORTAL_SIM_URL): %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxBodySize))
	if err != nil {
		return fmt.Errorf("reading the portal's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return refusalOf(resp, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("reading the portal's answer: %w", err)
	}
	return nil
}

// refusalOf reads the admin API's JSON refusal body b of resp.
func refusalOf(resp *http.Response, b []byte) *AdminError {
	var pe protocol.Error
	if json.Unmarshal(b, &pe) != nil || pe.Message == "" {
		pe.Message = fmt.Sprintf("the portal answered %s", resp.Status)
	}
	return &AdminError{Status: resp.StatusCode, Code: pe.Code, Message: pe.Message}
}
