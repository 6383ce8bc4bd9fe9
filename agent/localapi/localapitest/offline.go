package localapitest

import (
	"context"
	"slices"

	"github.com/pbx-agent/pbx-agent/agent/localapi"
	"github.com/pbx-agent/pbx-agent/pkg/apitype"
)

var _ localapi.OfflineBackend = (*Backend)(nil)

// offlineFake is what the Backend answers and records of the file exchange.
type offlineFake struct {
	file       apitype.OfflineFile // what OfflineRequest and OfflineReport answer
	err        error               // what they return
	installErr error
	keys       []string // asked for requests
	installed  []string // licence files offered
	reports    int
}

// SetOfflineFile sets what OfflineRequest and OfflineReport answer.
func (b *Backend) SetOfflineFile(f apitype.OfflineFile, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offline.file, b.offline.err = f, err
}

// SetInstallErr sets what InstallLicenceFile returns.
func (b *Backend) SetInstallErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offline.installErr = err
}

// OfflineRequest records key and answers the file set.
func (b *Backend) OfflineRequest(_ context.Context, key string) (apitype.OfflineFile, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offline.keys = append(b.offline.keys, key)
	return b.offline.file, b.offline.err
}

// InstallLicenceFile records file.
func (b *Backend) InstallLicenceFile(_ context.Context, file string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offline.installed = append(b.offline.installed, file)
	return b.offline.installErr
}

// OfflineReport counts the report and answers the file set.
func (b *Backend) OfflineReport(context.Context) (apitype.OfflineFile, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offline.reports++
	return b.offline.file, b.offline.err
}

// LicenceFiles returns the files offered to InstallLicenceFile, in order.
func (b *Backend) LicenceFiles() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.offline.installed)
}

// OfflineKeys returns the keys OfflineRequest was asked with, in order.
func (b *Backend) OfflineKeys() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.offline.keys)
}
