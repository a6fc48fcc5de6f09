// Package cli is podorder's command line: which command runs, its flags, its usage and its exit code.
// Every mode is an explicit command; bare `podorder`, a mistyped command or a flag with no command
// prints usage and exits 2 without starting anything. cmd/podorder wires it to the process
// (arguments, standard streams, signals) and hands it the daemon to run.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/podorder/podorder/plugin/daemon"
	"github.com/podorder/podorder/plugin/explain"
	"github.com/podorder/podorder/plugin/nriconfig"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/status"
	"github.com/podorder/podorder/plugin/timeline"
	"github.com/podorder/podorder/plugin/version"
)

// Exit codes of every command.
const (
	// ExitOK: the command did what it was asked, or printed the help asked for.
	ExitOK = 0
	// ExitFailed: the command ran and failed (the daemon stopped, the status socket did not
	// answer, explain found a pod template podorder would reject).
	ExitFailed = 1
	// ExitUsage: the command line is wrong (no command, an unknown one, a bad flag or argument,
	// a daemon configuration that cannot work, manifests explain cannot read or that hold no pod
	// template); nothing was started.
	ExitUsage = 2
)

// Process is what a command reads, writes and starts.
type Process struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv).
	Getenv func(string) string
	// RunDaemon runs the node daemon with a validated configuration until it is told to stop;
	// cmd/podorder passes daemon.Run under a context SIGTERM and SIGINT cancel. Only
	// `podorder daemon` calls it.
	RunDaemon func(cfg daemon.Config, log *slog.Logger) error
	// Service finds containerd's service by its systemd unit's name, for `podorder enable-nri
	// --restart`; nil: systemd over its private socket (nriconfig.Unit).
	Service func(unit string) nriconfig.Service
}

// command is one of podorder's commands.
type command struct {
	name string
	// synopsis is what follows the name in usage: its flags and arguments.
	synopsis string
	// summary is the one line help gives it.
	summary string
	// run runs the command with the arguments after its name; fs is the command's flag set, its
	// usage already written, for the command to declare its flags on and parse.
	run func(p Process, fs *flag.FlagSet, args []string) int
}

// commands are podorder's commands, in the order help lists them.
func commands() []command {
	return []command{
		{"daemon", "[flags]", "run the node daemon, the NRI plugin that holds containers (the DaemonSet's container)", daemonCmd},
		{"status", "[-o table|json] [-a] [-store-dir DIR]", "on a node: every held container, what it waits for, since when", statusCmd},
		{"timeline", "NAMESPACE/POD [-o text|svg|json|perfetto] [-store-dir DIR]", "on a node: a pod's start and stop as a picture, one bar per container attempt, the critical path marked", timelineCmd},
		{"explain", "-f FILE|DIR|- [-f ...] [-o text|json|dot|svg] [-n NAMESPACE] [--allow-cross-namespace RULES]", "offline: what podorder would do with each pod template in manifests, and what it would reject", explainCmd},
		{"install-hook", "SRC DEST", "copy the hook binary onto the node, atomically (the DaemonSet's init container)", installHookCmd},
		{"enable-nri", "--config FILE [--dry-run] [--restart [--unit UNIT]]", "turn NRI on in containerd's config file, changing only its disable switches (the chart's opt-in init container)", enableNRICmd},
		{"version", "", "print podorder's version", versionCmd},
		{"help", "[COMMAND]", "print this list, or a command's flags", helpCmd},
	}
}

// names lists the commands as an error message does: "daemon, status, ...".
func names() string {
	var ns []string
	for _, c := range commands() {
		ns = append(ns, c.name)
	}
	return strings.Join(ns, ", ")
}

// Main runs the command args names (os.Args[1:]) and returns the exit code.
func Main(args []string, p Process) int {
	if len(args) == 0 {
		fmt.Fprintln(p.Stderr, "podorder: no command given; the node daemon is `podorder daemon`")
		fmt.Fprintln(p.Stderr)
		usage(p.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-version", "--version":
		name = "version"
	}
	if c, ok := lookup(name); ok {
		return c.run(p, c.flags(), args[1:])
	}
	if strings.HasPrefix(name, "-") {
		// The DaemonSet of podorder 0.3.0 and earlier passed the daemon's flags alone.
		fmt.Fprintf(p.Stderr, "podorder: flag %s comes before any command; the node daemon is `podorder daemon [flags]`, as in `podorder daemon %s`; the commands are: %s\n",
			name, strings.Join(args, " "), names())
		return ExitUsage
	}
	fmt.Fprintf(p.Stderr, "podorder: unknown command %q; the commands are: %s (`podorder help` says what each does)\n", name, names())
	return ExitUsage
}

// lookup finds the command called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage writes what `podorder help` prints: every command, one line each.
func usage(w io.Writer) {
	fmt.Fprint(w, `podorder holds a container until the containers it depends on have started, are ready or have
completed: a node daemon (an NRI plugin) and the commands to ask it and check manifests.

Usage: podorder COMMAND [ARGUMENTS]

Commands:
`)
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, "\n`podorder COMMAND --help` lists a command's flags.\n")
}

// flags returns the command's flag set, whose usage names the command, its synopsis and summary,
// then its flags.
func (c command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("podorder "+c.name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: podorder %s\n\n%s.\n", strings.TrimSpace(c.name+" "+c.synopsis), upper(c.summary))
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprint(w, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// upper capitalizes a summary's first letter, for a sentence.
func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// parse parses args into fs: asked for help (-h, --help), it prints fs's usage on standard output
// and says to exit 0; on a bad flag it prints the error and the usage on standard error and says
// to exit 2. done is false when the command goes on.
func parse(p Process, fs *flag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard) // the flag package prints on its own; the two cases below print instead
	err := fs.Parse(args)
	switch {
	case err == nil:
		return ExitOK, false
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(p.Stdout)
		fs.Usage()
		return ExitOK, true
	default:
		fs.SetOutput(p.Stderr)
		fmt.Fprintf(p.Stderr, "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return ExitUsage, true
	}
}

// noArgs parses a command that takes flags only, and refuses a stray argument.
func noArgs(p Process, fs *flag.FlagSet, args []string) (code int, done bool) {
	if code, done := parse(p, fs, args); done {
		return code, done
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(p.Stderr, "%s: unexpected argument %q: it takes flags only (`%s --help` lists them)\n", fs.Name(), fs.Arg(0), fs.Name())
		return ExitUsage, true
	}
	return ExitOK, false
}

// helpCmd is `podorder help [COMMAND]`.
func helpCmd(p Process, fs *flag.FlagSet, args []string) int {
	if code, done := parse(p, fs, args); done {
		return code
	}
	switch fs.NArg() {
	case 0:
		usage(p.Stdout)
		return ExitOK
	case 1:
		c, ok := lookup(fs.Arg(0))
		if !ok {
			fmt.Fprintf(p.Stderr, "podorder help: unknown command %q; the commands are: %s\n", fs.Arg(0), names())
			return ExitUsage
		}
		return c.run(p, c.flags(), []string{"--help"})
	}
	fmt.Fprintln(p.Stderr, "podorder help: name at most one command")
	return ExitUsage
}

// versionCmd is `podorder version`.
func versionCmd(p Process, fs *flag.FlagSet, args []string) int {
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	fmt.Fprintln(p.Stdout, version.Get())
	return ExitOK
}

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

// explainCmd is `podorder explain -f FILE|DIR|- ...`: exit 0 when podorder would accept every pod
// template, 1 when it would reject one, 2 on a usage or read error or when the manifests hold no
// pod template at all (a CI job pointed at the wrong files must not pass quietly).
func explainCmd(p Process, fs *flag.FlagSet, args []string) int {
	var files []string
	fs.Func("f", "a manifest file (YAML or JSON, several documents, kind List), a directory (its *.yaml, *.yml and *.json files, sorted, not recursive), or - for standard input; repeatable", func(v string) error {
		files = append(files, v)
		return nil
	})
	format := fs.String("o", "text", "output format: text, json (one object per pod template, see docs/labels.md), dot (each pod template's dependency graph for Graphviz) or svg (the same graph, drawn by podorder)")
	var opt explain.Options
	const nsUsage = "the namespace of objects whose manifest names none (default \"default\")"
	fs.StringVar(&opt.Namespace, "n", "", nsUsage)
	fs.StringVar(&opt.Namespace, "namespace", "", nsUsage)
	fs.Func("allow-cross-namespace", "the daemon's --allow-cross-namespace rules (source=target,...) to check pod(namespace/...) dependencies against; none, as the DaemonSet ships it", func(v string) error {
		rules, err := podstate.ParseCrossNamespaceRules(v)
		opt.CrossNamespace = rules
		return err
	})
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	write, ok := map[string]func(io.Writer, []explain.Workload) error{
		"text": explain.Write, "json": explain.WriteJSON, "dot": explain.WriteDOT, "svg": explain.WriteSVG,
	}[*format]
	if !ok {
		fmt.Fprintf(p.Stderr, "podorder explain: -o %s: want text, json, dot or svg\n", *format)
		return ExitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(p.Stderr, "podorder explain: give at least one -f FILE (a directory, or - for standard input)")
		return ExitUsage
	}
	all, err := explain.ReadFiles(p.Stdin, files, opt)
	if err != nil {
		fmt.Fprintln(p.Stderr, "podorder explain:", err)
		return ExitUsage
	}
	err = write(p.Stdout, all)
	switch {
	case len(all) == 0:
		fmt.Fprintf(p.Stderr, "podorder explain: no pod template in %s: nothing to explain (podorder reads Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Lists of them)\n",
			strings.Join(files, ", "))
		return ExitUsage
	case err != nil:
		fmt.Fprintln(p.Stderr, "podorder explain:", err)
		return ExitFailed
	}
	return ExitOK
}

// storeDir is the daemon's store directory, where its status socket is: the DaemonSet's
// PODORDER_STORE_DIR, which `kubectl exec` inherits, or the default.
func storeDir(p Process) string {
	if dir := p.Getenv("PODORDER_STORE_DIR"); dir != "" {
		return dir
	}
	return "/run/podorder"
}

// timelineFormats are the forms `podorder timeline -o` writes.
var timelineFormats = map[string]func(io.Writer, timeline.Chart) error{
	"text": timeline.WriteText, "svg": timeline.WriteSVG, "json": timeline.WriteJSON, "perfetto": timeline.WritePerfetto,
}

// timelineCmd is `podorder timeline NAMESPACE/POD`: it asks the daemon of this node for the pod's
// timeline (a pod running now, or one of the last ones removed) and draws it. The pod may come
// before or after the flags.
func timelineCmd(p Process, fs *flag.FlagSet, args []string) int {
	dir := storeDir(p)
	fs.StringVar(&dir, "store-dir", dir, "the daemon's store directory, where its status socket is")
	format := fs.String("o", "text", "output format: text (a Gantt chart for a terminal), svg, json, or perfetto (a trace for ui.perfetto.dev)")
	var pods []string
	for {
		if code, done := parse(p, fs, args); done {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pods, args = append(pods, fs.Arg(0)), fs.Args()[1:]
	}
	write, ok := timelineFormats[*format]
	if !ok {
		fmt.Fprintf(p.Stderr, "podorder timeline: -o %s: want text, svg, json or perfetto\n", *format)
		return ExitUsage
	}
	if len(pods) != 1 || !strings.Contains(pods[0], "/") && len(pods[0]) != 36 {
		fmt.Fprintln(p.Stderr, "podorder timeline: name one pod as NAMESPACE/NAME (or its UID), e.g. podorder timeline default/shop")
		return ExitUsage
	}
	tl, err := status.FetchTimeline(status.Socket(dir), pods[0])
	if err == nil {
		err = write(p.Stdout, timeline.Build(tl))
	}
	if err != nil {
		fmt.Fprintln(p.Stderr, "podorder timeline:", err)
		return ExitFailed
	}
	return ExitOK
}

// statusCmd is `podorder status`: it asks the daemon of this node, through the socket in its store
// directory (the DaemonSet's PODORDER_STORE_DIR, which `kubectl exec` inherits).
func statusCmd(p Process, fs *flag.FlagSet, args []string) int {
	storeDir := storeDir(p)
	fs.StringVar(&storeDir, "store-dir", storeDir, "the daemon's store directory, where its status socket is")
	format := fs.String("o", "table", "output format: table or json")
	all := fs.Bool("a", false, "list every container, not only the held ones")
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(p.Stderr, "podorder status: -o %s: want table or json\n", *format)
		return ExitUsage
	}
	pods, err := status.Fetch(status.Socket(storeDir))
	if err != nil {
		fmt.Fprintln(p.Stderr, "podorder status:", err)
		return ExitFailed
	}
	if *format == "json" {
		enc := json.NewEncoder(p.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(pods)
	} else {
		// The node's line first; a daemon from before the preflight has none.
		node, ok, nerr := status.FetchNode(status.Socket(storeDir))
		if nerr == nil && ok {
			nerr = status.WriteNode(p.Stdout, node)
		}
		if nerr != nil {
			fmt.Fprintln(p.Stderr, "podorder status:", nerr)
		}
		err = status.WriteTable(p.Stdout, pods, *all, time.Now())
	}
	if err != nil {
		fmt.Fprintln(p.Stderr, "podorder status:", err)
		return ExitFailed
	}
	return ExitOK
}
