package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

func TestDetectModel(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  license.Model
	}{
		{"hypervisor flag", map[string]string{"proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n"}, license.ModelVM},
		{"hypervisor flag last", map[string]string{"proc/cpuinfo": "flags\t\t: fpu hypervisor\n"}, license.ModelVM},
		{"QEMU vendor", map[string]string{"proc/cpuinfo": "flags\t\t: fpu\n", "sys/class/dmi/id/sys_vendor": "QEMU\n"}, license.ModelVM},
		{"VMware product", map[string]string{"proc/cpuinfo": "flags\t\t: fpu\n", "sys/class/dmi/id/product_name": "VMware Virtual Platform\n"}, license.ModelVM},
		{"bare metal", map[string]string{"proc/cpuinfo": "flags\t\t: fpu hypervisorx\n", "sys/class/dmi/id/sys_vendor": "Supermicro\n"}, license.ModelHW},
		{"cpuinfo hidden, DMI says KVM", map[string]string{"sys/class/dmi/id/product_name": "KVM\n"}, license.ModelVM},
		{"cpuinfo hidden, DMI says hardware", map[string]string{"sys/class/dmi/id/sys_vendor": "Dell Inc.\n"}, license.ModelHW},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				path := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := DetectModel(root)
			if err != nil || got != tt.want {
				t.Errorf("DetectModel = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := DetectModel(t.TempDir()); err == nil {
		t.Error("DetectModel with nothing readable: no error")
	}
}

func TestFingerprint(t *testing.T) {
	root := t.TempDir()
	if _, err := Fingerprint(root, "pbx-1", ""); err == nil {
		t.Error("Fingerprint with no machine id: no error")
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Fingerprint(root, "pbx-1", "")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Fingerprint(root, "pbx-2", "")
	c, _ := Fingerprint(root, "pbx-1", "SN-42")
	again, _ := Fingerprint(root, "pbx-1", "")
	if a != again || a == b || a == c {
		t.Errorf("fingerprints: same machine and PBX %q/%q, other PBX %q, serial override %q: want stable and distinct", a, again, b, c)
	}
	if strings.Contains(a, "0123456789abcdef") {
		t.Error("the fingerprint reveals the machine id")
	}
}
