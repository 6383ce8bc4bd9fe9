package localapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// OfflineBackend is what the file exchange of an air-gapped PBX needs of
// the daemon. A Backend that implements it too serves /v1/offline/;
// others answer those endpoints 501.
type OfflineBackend interface {
	// OfflineRequest validates key and writes the activation request to
	// carry to the portal (the same one again while it is outstanding).
	OfflineRequest(ctx context.Context, key string) (apitype.OfflineFile, error)
	// InstallLicenceFile checks and installs a licence file from the
	// portal. A refused file is a *license.Error.
	InstallLicenceFile(ctx context.Context, file string) error
	// OfflineReport writes the usage report to carry to the portal (the
	// same one again until a file answering it is installed).
	OfflineReport(ctx context.Context) (apitype.OfflineFile, error)
}

func (s *Server) offlineBackend() (OfflineBackend, error) {
	if b, ok := s.backend.(OfflineBackend); ok {
		return b, nil
	}
	return nil, &apiError{status: http.StatusNotImplemented, code: apitype.CodeNotFound, msg: "this daemon has no offline operation"}
}

// serveOfflineRequest answers {"key"} with the activation request: {"file", "again"}.
func (s *Server) serveOfflineRequest(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	b, err := s.offlineBackend()
	if err != nil {
		return err
	}
	var req apitype.OfflineRequestBody
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Key) == "" {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidKey, msg: `no key: the body is {"key": "<PBX key>"}`}
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	out, err := b.OfflineRequest(ctx, req.Key) // the key is never logged
	if err != nil {
		s.log.Info("offline activation request refused", peerAttr(r), "err", err)
		return activationError(err)
	}
	s.log.Info("offline activation request written through the local API", peerAttr(r), "again", out.Again)
	return writeJSON(w, http.StatusOK, out)
}

// serveOfflineLicence installs {"file"} and answers the status.
func (s *Server) serveOfflineLicence(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	b, err := s.offlineBackend()
	if err != nil {
		return err
	}
	var req apitype.OfflineFileRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.File) == "" {
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidFile, msg: `no licence file: the body is {"file": "<the file the portal wrote>"}`}
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	if err := b.InstallLicenceFile(ctx, req.File); err != nil {
		s.log.Info("offline licence file refused", peerAttr(r), "err", err)
		return offlineError(err)
	}
	st := s.status()
	s.log.Info("offline licence file installed through the local API", peerAttr(r), "state", st.State)
	return writeJSON(w, http.StatusOK, st)
}

// serveOfflineReport answers with the usage report: {"file", "again"}.
func (s *Server) serveOfflineReport(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permWrite); err != nil {
		return err
	}
	b, err := s.offlineBackend()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), backendTO)
	defer cancel()
	out, err := b.OfflineReport(ctx)
	if err != nil {
		return offlineError(err)
	}
	s.log.Info("offline usage report written through the local API", peerAttr(r), "again", out.Again)
	return writeJSON(w, http.StatusOK, out)
}

// offlineError maps an error of the file exchange to its answer.
func offlineError(err error) error {
	var le *license.Error
	switch {
	case errors.As(err, &le):
		return &apiError{status: http.StatusBadRequest, code: apitype.CodeInvalidFile, msg: le.Error()}
	case errors.Is(err, apitype.ErrNotActivated):
		return &apiError{status: http.StatusConflict, code: apitype.CodeNotActivated, msg: err.Error()}
	case errors.Is(err, apitype.ErrRefusedLocally):
		return &apiError{status: http.StatusConflict, code: apitype.CodeRefused, msg: err.Error()}
	}
	return &apiError{status: http.StatusInternalServerError, code: apitype.CodeInternal, msg: err.Error(), err: err}
}
