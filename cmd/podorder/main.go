// Command podorder is podorder in one binary: the node daemon, an NRI plugin that holds containers
// until the containers they depend on are started, ready or completed, and the commands around it.
// See docs/labels.md for the label API; plugin/cli for the commands:
//
//	podorder daemon [flags]          the node daemon (the DaemonSet's container)
//	podorder status [-o json] [-a]   on a node: every held container, what it waits for, since when
//	podorder explain -f pod.yaml     offline: the start plan and the problems of each pod template
//	podorder install-hook SRC DEST   the DaemonSet's init container
//	podorder version                 the release, commit and Go version
//	podorder help [COMMAND]          every command, or one command's flags
//
// Bare `podorder`, an unknown command or a flag before any command prints usage and exits 2: only
// `podorder daemon` starts the daemon.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/podorder/podorder/plugin/cli"
	"github.com/podorder/podorder/plugin/daemon"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Process{
		Stdin:     os.Stdin,
		Stdout:    os.Stdout,
		Stderr:    os.Stderr,
		Getenv:    os.Getenv,
		RunDaemon: runDaemon,
	}))
}

// runDaemon runs the node daemon until SIGTERM or SIGINT.
func runDaemon(cfg daemon.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return daemon.Run(ctx, cfg, log)
}
