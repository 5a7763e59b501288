// Command rig-etcd is the etcd server of Tether's test rig, built from the
// upstream server module so that no system package or download is needed.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
