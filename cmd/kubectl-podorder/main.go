// Command kubectl-podorder is `kubectl podorder`, podorder's view of the whole cluster; kubectl runs
// it when it is on $PATH (install it with krew or `go install ./cmd/kubectl-podorder`). See
// plugin/kubectlplugin for the commands:
//
//	kubectl podorder held [-A | -n NAMESPACE]        the pods podorder holds, and what each waits for
//	kubectl podorder status --node NODE [-a]         `podorder status` of one node's daemon
//	kubectl podorder status --pod NAMESPACE/POD      the same, for the node a pod runs on
//	kubectl podorder explain -f pod.yaml             offline: the start plan and problems of manifests
//	kubectl podorder version                         the release, commit and Go version
//	kubectl podorder help [COMMAND]                  every command, or one command's flags
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/podorder/podorder/plugin/kubectlplugin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := kubectlplugin.Main(ctx, os.Args[1:], kubectlplugin.Process{
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Connect: kubectlplugin.Connect,
		Now:     time.Now,
	})
	stop()
	os.Exit(code)
}
