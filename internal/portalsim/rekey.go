package portalsim

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/offline"
)

// KeyRequest is the optional body of POST /admin/v1/pbxs/{ref}/key.
type KeyRequest struct {
	KeyTTL *Duration `json:"key_ttl,omitempty"` // default Config.KeyTTL
}

// IssuedKey is a PBX with the key just issued for it, a bearer credential.
type IssuedKey struct {
	PBX PBX    `json:"pbx"`
	Key string `json:"key"`
}

// issuePBXKey is the portal's "Copy PBX key": a new key for a live PBX, at
// any time. It replaces the current key, so a key that has leaked or is
// lost (with an appliance sent back) stops activating anything. The
// binding is untouched: a new appliance still needs a re-bind first.
func (p *Portal) issuePBXKey(r *http.Request) (any, error) {
	var in KeyRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, errBadRequest("reading the body: %v", err)
	}
	if strings.TrimSpace(string(body)) != "" {
		if err := decodeBytes(body, &in); err != nil {
			return nil, err
		}
	}
	ttl := p.keyTTL
	if in.KeyTTL != nil {
		if ttl = time.Duration(*in.KeyTTL); ttl <= 0 {
			return nil, errBadRequest("key_ttl %v: must be positive", ttl)
		}
	}
	var out IssuedKey
	err = p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		if rec.deleted() {
			return errConflict("PBX %q was deleted on %s: a deleted PBX gets no new key; create a new PBX (pbx-portal-sim pbx create) and use its key",
				rec.Name, rec.DeletedAt.UTC().Format(time.RFC3339))
		}
		key, err := p.issueKeyLocked(rec, now, ttl)
		if err != nil {
			return err
		}
		out = IssuedKey{PBX: rec.view(), Key: key}
		return nil
	})
	return out, err
}

// issueKeyLocked signs a new PBX key for rec, valid for ttl from now, and
// makes it the PBX's only key: activation refuses every earlier one. The
// key states the current licence's term and counts. Callers hold p.mu.
func (p *Portal) issueKeyLocked(rec *pbxRecord, now time.Time, ttl time.Duration) (string, error) {
	now = now.Truncate(time.Second)
	key := license.Key{
		Version:   license.KeyVersion,
		ID:        "key-" + randomHex(8),
		PBX:       rec.License.PBX,
		Term:      rec.License.Term,
		Counts:    rec.License.Counts,
		IssuedAt:  now,
		ExpiresAt: now.Add(ttl),
	}
	signed, err := p.signer.Sign(license.TypeKey, key)
	if err != nil {
		return "", fmt.Errorf("signing the PBX key: %w", err)
	}
	previous := rec.KeyID
	rec.FormerKeyIDs = append(rec.FormerKeyIDs, previous)
	rec.KeyID, rec.KeyExpiresAt, rec.KeyDigest = key.ID, key.ExpiresAt, offline.KeyDigest(signed)
	p.markDirty()
	p.log.Info("PBX key issued; the previous one no longer activates", "pbx", rec.Name, "key_id", key.ID,
		"previous_key_id", previous, "expires", key.ExpiresAt)
	return signed, nil
}

// IssueKey issues a new key for a live PBX, replacing its current one;
// ttl 0 takes the portal's default.
func (c *Client) IssueKey(ctx context.Context, ref string, ttl time.Duration) (*IssuedKey, error) {
	var in KeyRequest
	if ttl != 0 {
		d := Duration(ttl)
		in.KeyTTL = &d
	}
	var out IssuedKey
	return &out, c.do(ctx, http.MethodPost, pbxPath(ref, "/key"), in, &out)
}
