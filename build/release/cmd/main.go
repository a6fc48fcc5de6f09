// Command release is `make release`: it writes every artifact of a podorder release into one
// directory (build/release says which). It needs root, as BuildKit does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/podorder/podorder/build/image"
	"github.com/podorder/podorder/build/release"
)

func main() {
	dist := flag.String("o", "dist", "directory to write the release into")
	img := flag.String("image", release.Image, "the image's name in the archive, without the tag")
	helm := flag.String("helm", os.Getenv("PODORDER_HELM"), "the helm binary (default $PODORDER_HELM)")
	flag.Parse()
	dir, err := filepath.Abs(*dist)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	artifacts, err := release.Run(ctx, release.Options{ModuleDir: ".", Dist: dir, Image: *img, Tools: image.CachedTools(), Helm: *helm})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, a := range artifacts {
		fmt.Println(filepath.Join(*dist, a))
	}
}
