// Command etcd is Ion's test build of etcd 3.6.4, the version Kubernetes v1.34.4 pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
