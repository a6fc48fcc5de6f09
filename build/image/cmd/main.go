// Command image is `make image`: it builds the Dockerfile with BuildKit and writes podorder's OCI
// image as an archive. Import it on a node
// with `ctr -n k8s.io images import`, or push it with any OCI tool (`skopeo copy
// oci-archive:_output/podorder-image.tar docker://<registry>/podorder:<tag>`).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/podorder/podorder/build/image"
)

func main() {
	out := flag.String("o", "_output", "directory to write the image archive into")
	tag := flag.String("tag", "", "the image's tag (default: v and the VERSION file)")
	flag.Parse()
	if *tag == "" {
		v, err := image.Version(".")
		if err != nil {
			fmt.Fprintln(os.Stderr, "image:", err)
			os.Exit(1)
		}
		*tag = "v" + v
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	path, err := image.Build(context.Background(), ".", dir, image.Ref+":"+*tag, image.CachedTools())
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("image %s:%s written to %s\n", image.Ref, *tag, path)
}
