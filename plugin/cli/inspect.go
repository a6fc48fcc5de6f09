package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/podorder/podorder/plugin/explain"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/status"
	"github.com/podorder/podorder/plugin/timeline"
)

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
