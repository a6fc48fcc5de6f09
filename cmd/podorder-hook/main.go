// Command podorder-hook is the OCI startContainer hook podorder injects into held containers. The
// runtime runs it inside the container, as the container's user, just before the container's own
// process; it exits 0 when every dependency is met and the process may start, or 1 with one line
// on stderr (shown in the container's log and status) when the hold times out or cannot be met.
//
// With --prestop it is a container's preStop hook instead (added by podorder's
// MutatingAdmissionPolicy): while the pod is being deleted it returns once every container that
// depends on this one has exited, so that kubelet signals dependencies after their dependents.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/podorder/podorder/hooks"
	"github.com/podorder/podorder/hooks/dependency"
)

func main() {
	var r hooks.Request
	flag.StringVar(&r.Dir, "dir", "/.podorder/store", "the pod's tombstone directory inside the container")
	flag.DurationVar(&r.Timeout, "timeout", 0, "longest hold")
	flag.StringVar(&r.Pod, "pod", "", "namespace/name of the pod, for messages")
	flag.StringVar(&r.Container, "container", "", "name of the held container, for messages")
	flag.StringVar(&r.ID, "id", "", "the runtime's ID of this container attempt: only a release the daemon recorded for it counts")
	flag.StringVar(&r.Wake, "wake", "", "this container's own wake FIFO")
	preStop := flag.Bool("prestop", false, "run as the container's preStop hook: wait until its dependents exited")
	settle := flag.Duration("settle", 2*time.Second, "with --prestop: how long to wait for podorder to say the pod is being deleted")
	flag.Parse()
	if *preStop {
		drain(r, *settle)
		return
	}
	for _, arg := range flag.Args() {
		d, err := dependency.ParseDependency(arg)
		if err != nil {
			fail(fmt.Errorf("podorder-hook: bad argument: %w", err))
		}
		r.Waits = append(r.Waits, d)
	}
	if r.Timeout <= 0 || len(r.Waits) == 0 {
		fail(fmt.Errorf("podorder-hook: need --timeout and at least one <container>=<condition> argument"))
	}
	ctx, _ := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	if err := hooks.Wait(ctx, r); err != nil {
		fail(err)
	}
	// Exit at once: runc execs the container's process when this one is gone, and stopping the
	// signal handling first would wait for its goroutine on another thread.
	os.Exit(0)
}

// drain is the preStop mode. kubelet ends it at the grace period's end at the latest.
func drain(r hooks.Request, settle time.Duration) {
	if r.Container == "" {
		fail(fmt.Errorf("podorder-hook: --prestop needs --container"))
	}
	if r.Wake == "" {
		r.Wake = "/.podorder/wake/wake"
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	waited, err := hooks.WaitDependents(ctx, hooks.Drain{Dir: r.Dir, Container: r.Container, Wake: r.Wake, Settle: settle})
	if err != nil {
		fail(err)
	}
	if len(waited) > 0 {
		fmt.Printf("podorder: %s waited %s for its dependents to exit: %s\n", r.Container, time.Since(start).Round(time.Millisecond), strings.Join(waited, ", "))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
