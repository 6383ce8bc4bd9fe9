//go:build linux

package localapi

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerCreds are a unix peer's credentials as they were when it connected.
type peerCreds struct {
	pid      int32
	uid, gid uint32
	groups   []uint32 // supplementary groups; nil when the kernel cannot say
}

// peerCredentials reads SO_PEERCRED and SO_PEERGROUPS of c.
func peerCredentials(c *net.UnixConn) (*peerCreds, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var creds *peerCreds
	var cerr error
	err = rc.Control(func(fd uintptr) {
		uc, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			cerr = fmt.Errorf("SO_PEERCRED: %w", err)
			return
		}
		groups, err := peerGroups(int(fd))
		if err != nil {
			cerr = fmt.Errorf("SO_PEERGROUPS: %w", err)
			return
		}
		creds = &peerCreds{pid: uc.Pid, uid: uc.Uid, gid: uc.Gid, groups: groups}
	})
	if err != nil {
		return nil, err
	}
	return creds, cerr
}

// peerGroups reads SO_PEERGROUPS (Linux 4.13 and later): the peer's
// supplementary groups at connect time, an array of gid_t (uint32 in host
// byte order). x/sys/unix has no helper for this option, and its
// GetsockoptString would cut the array at the first zero byte (gid 0, or any
// gid with a zero byte in it), so getsockopt is called directly. A buffer
// too small gets ERANGE with the needed length written back.
func peerGroups(fd int) ([]uint32, error) {
	n := 32
	for range 2 {
		buf := make([]uint32, n)
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch errno {
		case 0:
			return buf[:size/4], nil
		case unix.ERANGE:
			n = int(size/4) + 1
		case unix.ENOPROTOOPT:
			return nil, nil // an older kernel: only the primary group counts
		default:
			return nil, errno
		}
	}
	return nil, errors.New("group list keeps growing")
}
