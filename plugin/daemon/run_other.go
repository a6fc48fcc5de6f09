//go:build !linux

package daemon

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
)

// Run refuses: the daemon serves containerd's NRI on a Linux node. podorder builds for other systems
// for its offline commands (explain, version, help).
func Run(context.Context, Config, *slog.Logger) error {
	return errors.New("podorder daemon runs on Linux nodes only, not on " + runtime.GOOS + "; here use podorder explain, version or help")
}
