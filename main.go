// Command claimguard is the claimguard operator, its standalone forward-auth
// server and the explain tool; see `claimguard --help`.
package main

import (
	"os"

	"github.com/claimguard/claimguard/internal/cli"
)

func main() {
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
