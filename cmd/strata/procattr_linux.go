package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts cmd in its own process group (a terminal's
// Ctrl-C reaches strata, which lets running commands finish, not them),
// killed if strata dies.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
