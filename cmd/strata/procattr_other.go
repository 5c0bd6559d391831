//go:build !linux

package main

import "os/exec"

// ownProcessGroup leaves cmd in strata's process group where Linux's
// process attributes are not available.
func ownProcessGroup(cmd *exec.Cmd) {}
