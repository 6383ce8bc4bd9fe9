package localapi

import (
	"net/http"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

// serveMetrics answers GET /metrics from the daemon's registry
// (agent/metrics): read permission, as the status it is made of.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if err := s.permit(r, permRead); err != nil {
		return err
	}
	if s.metrics == nil {
		return &apiError{status: http.StatusNotFound, code: apitype.CodeNotFound, msg: "this server has no metrics"}
	}
	s.metrics.ServeHTTP(w, r)
	return nil
}
