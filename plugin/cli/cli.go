// Package cli is podorder's command line: which command runs, its flags, its usage and its exit code.
// Every mode is an explicit command; bare `podorder`, a mistyped command or a flag with no command
// prints usage and exits 2 without starting anything. cmd/podorder wires it to the process
// (arguments, standard streams, signals) and hands it the daemon to run.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/podorder/podorder/plugin/daemon"
	"github.com/podorder/podorder/plugin/nriconfig"
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
