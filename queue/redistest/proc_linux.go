package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills redis-server if the test binary dies without running
// its cleanups (a panic in another goroutine, a timeout).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
