// Command etcd is the etcd server built from its published module at the
// version pinned in go.mod, for the Rowcast test harness.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
