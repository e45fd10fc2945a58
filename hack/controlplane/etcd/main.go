// Command etcd is the upstream etcd server, built from the Go module proxy so
// that envtest has a real control plane on machines that cannot download
// release binaries.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
