// Package kubectlplugin is `kubectl podorder`, the cluster-wide view of podorder: which pods are held
// across the cluster (from their podorder.dev/released condition), a node's `podorder status` without
// finding that node's daemon pod by hand, and `podorder explain`. It talks to the API with the
// kubeconfig and connection flags kubectl users know (--kubeconfig, --context, -n ...), and follows
// podorder's command-line conventions: every mode is a command, and a wrong command line prints usage
// and exits 2. cmd/kubectl-podorder wires it to the process.
package kubectlplugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podorder/podorder/plugin/explain"
	"github.com/podorder/podorder/plugin/version"
)

// Exit codes of every command, those of `podorder`.
const (
	// ExitOK: the command did what it was asked, or printed the help asked for.
	ExitOK = 0
	// ExitFailed: the command ran and failed (the API refused, no daemon pod on that node, explain
	// found a pod template podorder would reject).
	ExitFailed = 1
	// ExitUsage: the command line is wrong; nothing was asked of the cluster.
	ExitUsage = 2
)

// Process is what a command reads, writes and connects to.
type Process struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Connect opens the cluster the kubeconfig and connection flags name; cmd/kubectl-podorder
	// passes Connect.
	Connect func(clientcmd.ClientConfig) (Cluster, error)
	// Now is the time `held` measures holds at (time.Now).
	Now func() time.Time
}

// command is one of kubectl podorder's commands.
type command struct {
	name, synopsis, summary string
	// run runs the command with the arguments after its name; fs is its flag set, its usage
	// already written.
	run func(ctx context.Context, p Process, fs *pflag.FlagSet, args []string) int
}

// commands are the commands, in the order help lists them.
func commands() []command {
	return []command{
		{"held", "[-A | -n NAMESPACE] [-o table|json]", "the pods podorder holds, in a namespace or across the cluster (-A), and what each waits for", heldCmd},
		{"status", "--node NODE | --pod [NAMESPACE/]POD [-o table|json] [-a]", "`podorder status` of one node, asked of that node's podorder daemon", statusCmd},
		{"explain", "-f FILE [-f FILE ...]", "offline: the start plan and the problems of each pod template in manifests", explainCmd},
		{"version", "", "print podorder's version", versionCmd},
		{"help", "[COMMAND]", "print this list, or a command's flags", helpCmd},
	}
}

// names lists the commands as an error message does: "held, status, ...".
func names() string {
	var ns []string
	for _, c := range commands() {
		ns = append(ns, c.name)
	}
	return strings.Join(ns, ", ")
}

// Main runs the command args names (os.Args[1:]) and returns the exit code; ctx ends a command
// early (SIGINT).
func Main(ctx context.Context, args []string, p Process) int {
	if len(args) == 0 {
		fmt.Fprintln(p.Stderr, "kubectl podorder: no command given")
		fmt.Fprintln(p.Stderr)
		usage(p.Stderr)
		return ExitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "--version":
		name = "version"
	}
	if c, ok := lookup(name); ok {
		return c.run(ctx, p, c.flags(), args[1:])
	}
	fmt.Fprintf(p.Stderr, "kubectl podorder: unknown command %q; the commands are: %s (`kubectl podorder help` says what each does)\n", name, names())
	return ExitUsage
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// usage writes what `kubectl podorder help` prints.
func usage(w io.Writer) {
	fmt.Fprint(w, `kubectl podorder: podorder across the cluster. podorder holds a container until the containers it
depends on have started, are ready or have completed.

Usage: kubectl podorder COMMAND [ARGUMENTS]

Commands:
`)
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, "\n`kubectl podorder COMMAND --help` lists a command's flags.\n")
}

// flags returns the command's flag set, whose usage names the command, its synopsis and summary,
// then its flags; connection flags are named, not described.
func (c command) flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl podorder "+c.name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: kubectl podorder %s\n\n%s.\n", strings.TrimSpace(c.name+" "+c.synopsis), upper(c.summary))
		if own := fs.FlagUsages(); own != "" {
			fmt.Fprint(w, "\nFlags:\n"+own)
		}
		if fs.Lookup("kubeconfig") != nil {
			fmt.Fprint(w, "\nThe API is reached as kubectl reaches it: $KUBECONFIG or ~/.kube/config, and kubectl's\n"+
				"connection flags --kubeconfig, --context, --cluster, --user, --server, --token, --as, --as-group,\n"+
				"--certificate-authority, --insecure-skip-tls-verify, --request-timeout (`kubectl options`).\n")
		}
	}
	return fs
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// connectionFlags declares kubectl's connection flags on fs, -n/--namespace described as namespace
// says and the rest hidden from the command's flag list, and returns the client configuration they
// make.
func connectionFlags(fs *pflag.FlagSet, namespace string) clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	conn := pflag.NewFlagSet("connection", pflag.ContinueOnError)
	conn.StringVar(&rules.ExplicitPath, "kubeconfig", "", "")
	clientcmd.BindOverrideFlags(overrides, conn, clientcmd.RecommendedConfigOverrideFlags(""))
	conn.VisitAll(func(f *pflag.Flag) { f.Hidden = f.Name != "namespace" })
	conn.Lookup("namespace").Usage = namespace
	fs.AddFlagSet(conn)
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// parse parses args into fs: asked for help it prints fs's usage on standard output and says to
// exit 0; on a bad flag it prints the error and the usage on standard error and says to exit 2.
// done is false when the command goes on.
func parse(p Process, fs *pflag.FlagSet, args []string) (code int, done bool) {
	fs.SetOutput(io.Discard) // pflag prints on its own; the cases below print instead
	err := fs.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		fs.SetOutput(p.Stdout)
		fs.Usage()
		return ExitOK, true
	case err != nil:
		fs.SetOutput(p.Stderr)
		fmt.Fprintf(p.Stderr, "%s: %v\n", fs.Name(), err)
		fs.Usage()
		return ExitUsage, true
	}
	return ExitOK, false
}

// noArgs parses a command that takes flags only, and refuses a stray argument.
func noArgs(p Process, fs *pflag.FlagSet, args []string) (code int, done bool) {
	if code, done := parse(p, fs, args); done {
		return code, done
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(p.Stderr, "%s: unexpected argument %q: it takes flags only (`%s --help` lists them)\n", fs.Name(), fs.Arg(0), fs.Name())
		return ExitUsage, true
	}
	return ExitOK, false
}

// outputFlag declares -o/--output: table or json.
func outputFlag(fs *pflag.FlagSet) *string {
	return fs.StringP("output", "o", "table", "output format: table or json")
}

// checkOutput refuses an output format other than table and json.
func checkOutput(p Process, fs *pflag.FlagSet, format string) bool {
	if format == "table" || format == "json" {
		return true
	}
	fmt.Fprintf(p.Stderr, "%s: -o %s: want table or json\n", fs.Name(), format)
	return false
}

// fail reports err, from a command that ran, and returns ExitFailed.
func fail(p Process, fs *pflag.FlagSet, err error) int {
	fmt.Fprintf(p.Stderr, "%s: %v\n", fs.Name(), err)
	return ExitFailed
}

// helpCmd is `kubectl podorder help [COMMAND]`.
func helpCmd(ctx context.Context, p Process, fs *pflag.FlagSet, args []string) int {
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
			fmt.Fprintf(p.Stderr, "kubectl podorder help: unknown command %q; the commands are: %s\n", fs.Arg(0), names())
			return ExitUsage
		}
		return c.run(ctx, p, c.flags(), []string{"--help"})
	}
	fmt.Fprintln(p.Stderr, "kubectl podorder help: name at most one command")
	return ExitUsage
}

// versionCmd is `kubectl podorder version`: the release it was built from, as `podorder version`.
func versionCmd(_ context.Context, p Process, fs *pflag.FlagSet, args []string) int {
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	fmt.Fprintln(p.Stdout, version.Get())
	return ExitOK
}

// explainCmd is `kubectl podorder explain -f FILE ...`, `podorder explain` under kubectl: exit 0 when
// podorder would accept every pod template, 1 when it would reject one, 2 on a usage or read error.
func explainCmd(_ context.Context, p Process, fs *pflag.FlagSet, args []string) int {
	files := fs.StringArrayP("filename", "f", nil, "a manifest file (YAML or JSON, several documents allowed); - for standard input; repeatable")
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	if len(*files) == 0 {
		fmt.Fprintln(p.Stderr, "kubectl podorder explain: give at least one -f FILE (a directory, or - for standard input)")
		return ExitUsage
	}
	ws, err := explain.ReadFiles(p.Stdin, *files, explain.Options{})
	if err != nil {
		fmt.Fprintln(p.Stderr, "kubectl podorder explain:", err)
		return ExitUsage
	}
	if err := explain.Write(p.Stdout, ws); err != nil {
		return fail(p, fs, err)
	}
	return ExitOK
}

// heldCmd is `kubectl podorder held`: the pods whose podorder.dev/released condition is False.
func heldCmd(ctx context.Context, p Process, fs *pflag.FlagSet, args []string) int {
	all := fs.BoolP("all-namespaces", "A", false, "list held pods in every namespace")
	format := outputFlag(fs)
	cfg := connectionFlags(fs, "list held pods in this namespace (default: the kubeconfig context's)")
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	if !checkOutput(p, fs, *format) {
		return ExitUsage
	}
	if *all && fs.Changed("namespace") {
		fmt.Fprintf(p.Stderr, "%s: -A lists every namespace, -n one: give one of them\n", fs.Name())
		return ExitUsage
	}
	cluster, err := p.Connect(cfg)
	if err != nil {
		return fail(p, fs, err)
	}
	namespace := cluster.Namespace
	if *all {
		namespace = ""
	}
	held, err := Held(ctx, cluster.Client, namespace)
	if err != nil {
		return fail(p, fs, err)
	}
	switch {
	case *format == "json":
		enc := json.NewEncoder(p.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(held)
	case len(held) == 0:
		// As kubectl's "No resources found": on standard error, so the table stays empty.
		fmt.Fprintf(p.Stderr, "No pod is held by podorder %s.\n", inNamespace(namespace))
	default:
		err = WriteHeld(p.Stdout, held, p.Now())
	}
	if err != nil {
		return fail(p, fs, err)
	}
	return ExitOK
}

// statusCmd is `kubectl podorder status`: `/podorder status` run in the podorder pod of one node,
// its output streamed and its exit code returned.
func statusCmd(ctx context.Context, p Process, fs *pflag.FlagSet, args []string) int {
	node := fs.String("node", "", "the node whose podorder daemon to ask")
	pod := fs.String("pod", "", "ask the daemon of the node this pod runs on: NAMESPACE/POD, or POD in the namespace of -n")
	format := outputFlag(fs)
	all := fs.BoolP("all", "a", false, "list every container of the pods that use podorder, not only the held ones")
	daemonNamespace := fs.String("podorder-namespace", DefaultNamespace, "the namespace podorder's DaemonSet runs in (a Helm release's namespace)")
	cfg := connectionFlags(fs, "the namespace of --pod POD (default: the kubeconfig context's)")
	if code, done := noArgs(p, fs, args); done {
		return code
	}
	if !checkOutput(p, fs, *format) {
		return ExitUsage
	}
	if (*node == "") == (*pod == "") {
		fmt.Fprintf(p.Stderr, "%s: give one of --node NODE and --pod [NAMESPACE/]POD (`kubectl get nodes` lists the nodes)\n", fs.Name())
		return ExitUsage
	}
	cluster, err := p.Connect(cfg)
	if err != nil {
		return fail(p, fs, err)
	}
	if *pod != "" {
		namespace, name, ok := strings.Cut(*pod, "/")
		if !ok {
			namespace, name = cluster.Namespace, *pod
		}
		if *node, err = NodeOf(ctx, cluster.Client, namespace, name); err != nil {
			return fail(p, fs, err)
		}
	}
	daemon, err := DaemonPod(ctx, cluster.Client, *daemonNamespace, *node)
	if err != nil {
		return fail(p, fs, err)
	}
	command := []string{"/podorder", "status", "-o", *format}
	if *all {
		command = append(command, "-a")
	}
	code, err := cluster.Exec.Exec(ctx, daemon.Namespace, daemon.Name, DaemonContainer, command, p.Stdout, p.Stderr)
	if err != nil {
		return fail(p, fs, fmt.Errorf("run `%s` in the podorder pod of node %s: %w", strings.Join(command, " "), *node, err))
	}
	return code
}
