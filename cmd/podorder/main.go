// Command podorder is the node daemon: an NRI plugin that holds containers until the containers they
// depend on are started, ready or completed. See docs/labels.md for the label API.
//
//	podorder [flags]                 the daemon
//	podorder explain -f pod.yaml     offline: the start plan and the problems of each pod template
//	podorder status [-o json] [-a]   on a node: every held container, what it waits for, since when
//	podorder install-hook SRC DEST   the DaemonSet's init container
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podorder/podorder/plugin/daemon"
	"github.com/podorder/podorder/plugin/explain"
	"github.com/podorder/podorder/plugin/status"
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
	if len(os.Args) > 1 && os.Args[1] == "explain" {
		os.Exit(explainCmd(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "status" {
		os.Exit(statusCmd(os.Args[2:]))
	}
	var cfg daemon.Config
	cfg.RegisterFlags(flag.CommandLine)
	flag.Parse()
	log, err := cfg.Logger()
	if err == nil {
		err = cfg.Validate()
	}
	if err == nil {
		_, err = daemon.SetMemoryLimit(os.Getenv, log)
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

// explainCmd is `podorder explain -f FILE ...`: exit 0 when podorder would accept every pod
// template, 1 when it would reject one, 2 on a usage or read error.
func explainCmd(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	var files []string
	fs.Func("f", "a manifest file (YAML or JSON, several documents allowed); - for standard input; repeatable", func(v string) error {
		files = append(files, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "podorder explain: give at least one -f FILE (- for standard input)")
		return 2
	}
	var all []explain.Workload
	for _, f := range files {
		r := os.Stdin
		if f != "-" {
			var err error
			if r, err = os.Open(f); err != nil {
				fmt.Fprintln(os.Stderr, "podorder explain:", err)
				return 2
			}
			defer r.Close()
		}
		ws, err := explain.Read(r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "podorder explain: %s: %v\n", f, err)
			return 2
		}
		all = append(all, ws...)
	}
	if err := explain.Write(os.Stdout, all); err != nil {
		fmt.Fprintln(os.Stderr, "podorder explain:", err)
		return 1
	}
	return 0
}

// statusCmd is `podorder status`: it asks the daemon of this node, through the socket in its store
// directory (the DaemonSet's PODORDER_STORE_DIR, which `kubectl exec` inherits).
func statusCmd(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	storeDir := os.Getenv("PODORDER_STORE_DIR")
	if storeDir == "" {
		storeDir = "/run/podorder"
	}
	fs.StringVar(&storeDir, "store-dir", storeDir, "the daemon's store directory, where its status socket is")
	format := fs.String("o", "table", "output format: table or json")
	all := fs.Bool("a", false, "list every container, not only the held ones")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	pods, err := status.Fetch(status.Socket(storeDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "podorder status:", err)
		return 1
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(pods)
	case "table":
		err = status.WriteTable(os.Stdout, pods, *all, time.Now())
	default:
		fmt.Fprintf(os.Stderr, "podorder status: -o %s: want table or json\n", *format)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "podorder status:", err)
		return 1
	}
	return 0
}
