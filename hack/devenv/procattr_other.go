//go:build !linux

package main

import "syscall"

// childProcAttr puts a child in its own process group (the terminal's Ctrl-C reaches devenv
// alone, which stops children in order). Only Linux can also tie its life to devenv's.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
