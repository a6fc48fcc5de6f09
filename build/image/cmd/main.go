// Command image is `make image`: it writes podorder's OCI image as an archive. Import it on a node
// with `ctr -n k8s.io images import`, or push it with any OCI tool (`skopeo copy
// oci-archive:_output/podorder-image.tar docker://<registry>/podorder:<tag>`).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podorder/podorder/build/image"
)

func main() {
	out := flag.String("o", "_output", "directory to write the image archive into")
	tag := flag.String("tag", "v0.3.0", "the image's tag")
	flag.Parse()
	path, err := image.Build(".", *out, image.Ref+":"+*tag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	abs, _ := filepath.Abs(path)
	fmt.Printf("image %s:%s written to %s\n", image.Ref, *tag, abs)
}
