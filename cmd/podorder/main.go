// Command podorder is the node daemon: an NRI plugin that holds containers until the containers they
// depend on are started, ready or completed. See README.md for the label API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/podorder/podorder/daemon"
)

func main() {
	// `podorder install-hook SRC DEST` is the DaemonSet's init container: the image has no shell.
	if len(os.Args) == 4 && os.Args[1] == "install-hook" {
		if err := daemon.InstallHook(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "podorder:", err)
			os.Exit(1)
		}
		return
	}
	var cfg daemon.Config
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	log, err := cfg.Logger()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podorder:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log.Info("podorder starting", "nri_socket", cfg.NRISocket, "store_dir", cfg.StoreDir, "hook_binary", cfg.HookBinary, "plugin_index", cfg.PluginIndex)
	if err := daemon.Run(ctx, cfg, log); err != nil {
		log.Error("podorder stopped", "error", err)
		os.Exit(1)
	}
}
