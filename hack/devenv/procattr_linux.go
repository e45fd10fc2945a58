package main

import "syscall"

// childProcAttr puts a child in its own process group (the terminal's Ctrl-C reaches devenv
// alone, which stops children in order) and has the kernel kill it if devenv dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
