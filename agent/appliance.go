package agent

import (
	"context"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/apitype"
	"github.com/pbx-agent/pbx-agent/pkg/identity"
	"github.com/pbx-agent/pbx-agent/pkg/wms"
)

// applianceInfoTTL is how long the serial, the installed WMS version and
// the repository's latest stable one are kept: reading them runs dpkg-query
// and reads apt's lists, too much for every status request and /metrics
// scrape, and they change only on an upgrade or an apt-get update. Past
// it, they are read again only if dpkg's database, apt's lists or the
// serial's copy changed (see machineFiles), so a PBX scraped every 15
// seconds does not run dpkg-query every minute of its life.
const applianceInfoTTL = time.Minute

// Where dpkg keeps what is installed, under the agent's root: dpkg
// replaces the status file (a rename) and journals into the updates
// folder on every change.
const (
	dpkgStatusFile  = "/var/lib/dpkg/status"
	dpkgUpdatesDir  = "/var/lib/dpkg/updates"
	machineFileSigs = 4
)

// applianceInfo reads, and keeps for applianceInfoTTL, what the status
// shows of the machine: its serial number and where the WMS stands
// against the repository's latest stable version.
type applianceInfo struct {
	serial   string // identity.serial
	root     string // prefix of the machine files read
	copyPath string // the root step's copy of the DMI serial
	lists    string // apt's package lists
	source   wms.Source
	up       WMSUpgrader // nil: upgrades not set up
	clock    func() time.Time

	mu     sync.Mutex // guards the fields below; held while reading, so one read at a time
	read   time.Time
	files  [machineFileSigs]fileStamp // machineFiles at the last read
	cached applianceSnapshot
}

// fileStamp is what stat says of a file that a change to it changes: the
// inode (a file replaced by a rename), its size and modification time (a
// folder's changes with its entries). A file that does not exist has the
// zero stamp.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime int64
}

func stampOf(path string) fileStamp {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return fileStamp{}
	}
	return fileStamp{ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano()}
}

// machineFiles stamps what an upgrade, an apt-get update or the serial's
// copy changes. ok is false when dpkg's status file is missing: nothing
// then says whether the installed version changed.
func (i *applianceInfo) machineFiles() (stamps [machineFileSigs]fileStamp, ok bool) {
	stamps = [machineFileSigs]fileStamp{
		stampOf(filepath.Join(i.root, dpkgStatusFile)),
		stampOf(filepath.Join(i.root, dpkgUpdatesDir)),
		stampOf(i.lists),
		stampOf(i.copyPath),
	}
	return stamps, stamps[0] != (fileStamp{})
}

type applianceSnapshot struct {
	appliance apitype.ApplianceStatus
	wms       apitype.WMSStatus // Version, VersionUnknown, Latest, LatestUnknown, Behind
}

func newApplianceInfo(cfg *Config, root string, up WMSUpgrader, now func() time.Time) *applianceInfo {
	u := cfg.Upgrade
	return &applianceInfo{
		serial: cfg.Identity.Serial, root: root,
		copyPath: filepath.Join(cfg.RuntimeDir, identity.SerialCopyName),
		lists:    filepath.Join(root, wms.AptListsDir),
		source:   wms.Source{URL: u.RepoURL, Suite: u.RepoSuite, Components: u.RepoComponents, Package: u.Package},
		up:       up, clock: now,
	}
}

// snapshot returns what was read within applianceInfoTTL, reading again
// when older.
func (i *applianceInfo) snapshot(ctx context.Context) applianceSnapshot {
	i.mu.Lock()
	defer i.mu.Unlock()
	now := i.clock()
	if !i.read.IsZero() && now.Sub(i.read) < applianceInfoTTL && !now.Before(i.read) {
		return i.cached
	}
	files, ok := i.machineFiles()
	if ok && !i.read.IsZero() && files == i.files {
		i.read = now // nothing it was read from changed
		return i.cached
	}
	var s applianceSnapshot
	s.appliance.Serial, s.appliance.SerialSource = identity.ResolveSerial(i.serial, i.root, i.copyPath)
	s.wms = i.readWMS(ctx)
	i.read, i.files, i.cached = now, files, s
	return s
}

func (i *applianceInfo) readWMS(ctx context.Context) apitype.WMSStatus {
	var st apitype.WMSStatus
	var installed wms.Version
	switch {
	case i.up == nil:
		st.VersionUnknown = "WMS upgrades are not set up on this appliance, so the installed version is not read"
	default:
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := i.up.Installed(ctx)
		cancel()
		switch {
		case err != nil:
			st.VersionUnknown = "dpkg's database could not be read: " + err.Error()
		case v == "":
			st.VersionUnknown = "the package " + i.source.Package + ", which upgrade.package names, is not installed"
		default:
			st.Version = v
			installed, _ = wms.ParseVersion(v) // outside the format: no comparison
		}
	}
	latest, err := wms.LatestStable(i.lists, i.source)
	if err != nil {
		st.LatestUnknown = err.Error()
		return st
	}
	st.Latest = latest.Version.String()
	st.Behind = !installed.IsZero() && installed.Compare(latest.Version) < 0
	return st
}

// applianceStatus returns the appliance's part of the status and fills in
// the WMS's versions. The installed version the upgrade component read
// last (during an upgrade) stands over the cached one.
func (a *Agent) applianceStatus(w *apitype.WMSStatus) apitype.ApplianceStatus {
	s := a.info.snapshot(context.Background())
	upgradeRead := w.Version
	w.VersionUnknown, w.Latest, w.LatestUnknown, w.Behind = s.wms.VersionUnknown, s.wms.Latest, s.wms.LatestUnknown, s.wms.Behind
	w.Version = s.wms.Version
	if upgradeRead != "" && upgradeRead != w.Version {
		w.Version, w.VersionUnknown = upgradeRead, ""
		iv, err1 := wms.ParseVersion(upgradeRead)
		lv, err2 := wms.ParseVersion(w.Latest)
		w.Behind = err1 == nil && err2 == nil && iv.Compare(lv) < 0
	}
	return s.appliance
}
