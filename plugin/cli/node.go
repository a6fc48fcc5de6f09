package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/podorder/podorder/plugin/daemon"
	"github.com/podorder/podorder/plugin/nriconfig"
	"github.com/podorder/podorder/plugin/version"
)

// daemonCmd is `podorder daemon [flags]`: the node daemon, until SIGTERM or SIGINT. A configuration
// that cannot work exits 2 before the daemon starts.
func daemonCmd(p Process, fs *flag.FlagSet, args []string) int {
	var cfg daemon.Config
	cfg.RegisterFlags(fs)
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	log, err := cfg.Logger(p.Stderr)
	if err != nil {
		fmt.Fprintln(p.Stderr, "podorder daemon:", err)
		return ExitUsage
	}
	info := version.Get()
	attrs := []any{"version", info.Release}
	if info.Commit != "" {
		attrs = append(attrs, "commit", info.Commit)
	}
	attrs = append(attrs, "go", info.Go, "nri_socket", cfg.NRISocket, "store_dir", cfg.StoreDir, "hook_binary", cfg.HookBinary, "plugin_index", cfg.PluginIndex)
	log.Info("podorder starting", attrs...)
	err = cfg.Validate()
	if err == nil {
		_, err = daemon.SetMemoryLimit(p.Getenv, log)
	}
	if err != nil {
		log.Error("podorder cannot start", "error", err)
		fmt.Fprintln(p.Stderr, "podorder daemon:", err)
		return ExitUsage
	}
	if err := p.RunDaemon(cfg, log); err != nil {
		log.Error("podorder stopped", "error", err)
		return ExitFailed
	}
	return ExitOK
}

// installHookCmd is `podorder install-hook SRC DEST`, the DaemonSet's init container: the image has no
// shell to copy with.
func installHookCmd(p Process, fs *flag.FlagSet, args []string) int {
	if code, done := parse(p, fs, args); done {
		return code
	}
	if fs.NArg() != 2 {
		fmt.Fprintf(p.Stderr, "podorder install-hook: want SRC and DEST, got %d arguments\n", fs.NArg())
		return ExitUsage
	}
	if err := daemon.InstallHook(fs.Arg(0), fs.Arg(1)); err != nil {
		fmt.Fprintln(p.Stderr, "podorder install-hook:", err)
		return ExitFailed
	}
	return ExitOK
}

// enableNRICmd is `podorder enable-nri --config FILE`: exit 0 when NRI is on in the file, already or
// now; 1 when the file cannot be read or written, when it refuses to edit it (the reason says what
// to do by hand), or when the restart asked for fails.
func enableNRICmd(p Process, fs *flag.FlagSet, args []string) int {
	path := fs.String("config", "/etc/containerd/config.toml", "containerd's config file (in the chart's init container, the node's file under /host)")
	dryRun := fs.Bool("dry-run", false, "print the change, write nothing and restart nothing")
	restart := fs.Bool("restart", false, "restart containerd through systemd (its private socket "+nriconfig.SystemdSocket+") when its config changed since it started; "+
		"running containers keep running, CRI calls pause while containerd starts")
	unit := fs.String("unit", "containerd.service", "containerd's systemd unit, for --restart")
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(p.Stderr, "podorder enable-nri: %s: %v\n", *path, err)
		return ExitFailed
	}
	f, err := nriconfig.Read(*path)
	if err != nil {
		return fail(err)
	}
	res, err := nriconfig.Enable(f.Content)
	if err != nil {
		return fail(err)
	}
	for _, note := range res.Notes {
		fmt.Fprintln(p.Stdout, "note:", note)
	}
	restartHint := fmt.Sprintf("containerd reads its config only when it starts: NRI comes on when containerd restarts. On the node, run\n"+
		"  systemctl restart %s\n"+
		"(running containers keep running; CRI calls pause for the seconds containerd takes to start)\n", strings.TrimSuffix(*unit, ".service"))
	if !res.Changed() {
		fmt.Fprintf(p.Stdout, "%s: %s; nothing to change\n", *path, res.State)
	} else {
		fmt.Fprintf(p.Stdout, "%s: %s\n--- %s\n+++ %s (NRI on)\n", *path, res.State, *path, *path)
		for _, e := range res.Edits {
			fmt.Fprintf(p.Stdout, "@@ line %d @@\n-%s\n+%s\n", e.Line, e.Before, e.After)
		}
		if *dryRun {
			fmt.Fprint(p.Stdout, "dry run: nothing written. "+restartHint)
			return ExitOK
		}
		if err := f.Write(res.Content); err != nil {
			return fail(err)
		}
		fmt.Fprintf(p.Stdout, "wrote %s; the original is in %s\n", *path, f.Backup())
	}
	if *dryRun {
		return ExitOK
	}
	if !*restart {
		if res.Changed() {
			fmt.Fprint(p.Stdout, restartHint)
		}
		return ExitOK
	}
	service := p.Service
	if service == nil {
		service = func(unit string) nriconfig.Service { return nriconfig.Unit{Name: unit} }
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	svc := service(*unit)
	if !res.Changed() {
		since, err := svc.ActiveSince(ctx)
		if err != nil {
			return fail(fmt.Errorf("%w; restart containerd yourself if its config changed since it started", err))
		}
		if !nriconfig.NeedsRestart(false, f.Modified, since) {
			fmt.Fprintf(p.Stdout, "%s started after the file last changed: no restart\n", *unit)
			return ExitOK
		}
		fmt.Fprintf(p.Stdout, "the file changed after %s started\n", *unit)
	}
	fmt.Fprintf(p.Stdout, "restarting %s (running containers keep running)\n", *unit)
	if err := svc.Restart(ctx); err != nil {
		return fail(fmt.Errorf("%w; the file is patched: restart containerd yourself (systemctl restart %s)", err, strings.TrimSuffix(*unit, ".service")))
	}
	fmt.Fprintf(p.Stdout, "restarted %s: NRI is on\n", *unit)
	return ExitOK
}
