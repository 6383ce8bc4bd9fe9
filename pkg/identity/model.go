// Package identity detects what appliance the agent runs on.
package identity

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// hypervisorVendors are DMI vendor or product strings of virtual machines.
var hypervisorVendors = []string{"qemu", "kvm", "vmware", "virtualbox", "innotek", "xen", "microsoft corporation", "bochs", "parallels", "openstack", "amazon ec2", "google compute engine"}

// DetectModel tells a virtual machine (WPBX-VM) from a hardware appliance
// (WPBX-HW). root relocates every path read, so tests run on fixtures; use
// "/" on a live system. The CPU's hypervisor flag decides when present, then
// the DMI vendor and product names. The daemon's unit hides /proc/cpuinfo
// (ProcSubset=pid), so the DMI names alone must do there; with neither
// readable, detection fails rather than guess.
func DetectModel(root string) (license.Model, error) {
	sources := 0
	if cpuinfo, err := os.ReadFile(filepath.Join(root, "proc/cpuinfo")); err == nil {
		sources++
		sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "flags") && strings.Contains(line+" ", " hypervisor ") {
				return license.ModelVM, nil
			}
		}
	}
	for _, f := range []string{"sys/class/dmi/id/sys_vendor", "sys/class/dmi/id/product_name"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue
		}
		sources++
		v := strings.ToLower(strings.TrimSpace(string(b)))
		for _, h := range hypervisorVendors {
			if strings.Contains(v, h) {
				return license.ModelVM, nil
			}
		}
	}
	if sources == 0 {
		return "", fmt.Errorf("detecting model: neither /proc/cpuinfo nor DMI names are readable; set identity.model to %s or %s", license.ModelHW, license.ModelVM)
	}
	return license.ModelHW, nil
}
