package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podorder/podorder/test/checker"
	"github.com/podorder/podorder/test/harness"
)

// The proof campaign: fourteen fixed pods, each shaped to expose one way podorder could break its
// promise, run on a private containerd and judged by the churn's checker. On the real build the
// checker must find no violation; `make mutants` builds the daemon and the hook with one planted
// bug at a time (PODORDER_MUTANT, see the mutant_*.go files) and the checker must find at least one.
//
//	startedcounts    a held dependency counted started at its runtime start     → "held": app waits db:started, db waits x:ready
//	previousattempt  a restarted dependency judged by its previous attempt      → "restarted"
//	onedepignored    one of several dependencies ignored                        → "two-deps-*"
//	nowake           no wake-up sent (the hook's own 1 s re-read releases)      → "wake-*": podorder's release → first line
//	latereleased     a release recorded after the hold's deadline               → "deadline-*": db ready just past app's deadline
//	nohold           the hook exits at once                                      → every pod
func TestCheckerCatchesPlantedBugs(t *testing.T) {
	env := harness.Start(t, harness.Options{})
	env.ImportWorkloadImages(t)
	po := startPodorder(t, env)
	ch := &churn{t: t, env: env, po: po, rng: rand.New(rand.NewPCG(1, 2))}
	ports := &ports{next: 21000}

	pods := proofPods(t, ports)
	restarted := restartedDependencyPod(ports.take(t))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ch.runRestartedDependency(restarted) }()
	ch.wave(pods, nil)
	wg.Wait()
	pods = append(pods, restarted)
	ch.settle(pods)

	r, m := ch.check(pods)
	name := mutant()
	if name == "" {
		name = "none (the real build)"
	}
	logReport(t, "proof, mutant "+name, r, m)
	violations := r.Of(checker.Violation)
	switch {
	case mutant() == "":
		for _, f := range violations {
			t.Errorf("violation: %s: %s", f.Where, strings.Join(f.Why, "; "))
		}
	case len(violations) == 0:
		t.Errorf("missed %s: the checker found no violation", mutant())
	default:
		t.Logf("caught %s: %d violations, first: %s: %s", mutant(), len(violations), violations[0].Where, strings.Join(violations[0].Why, "; "))
	}
}

// serving and plainWaiting build the proof's containers.
func serving(name string, port int, listenAfter time.Duration, deps ...churnDep) *churnContainer {
	return &churnContainer{name: name, role: server, port: port, listenAfter: listenAfter, deps: deps, timeout: 10 * time.Second}
}

func plainWaiting(name string, timeout time.Duration, deps ...churnDep) *churnContainer {
	return &churnContainer{name: name, role: plain, deps: deps, timeout: timeout}
}

func proofPods(t *testing.T, ports *ports) []*churnPod {
	var pods []*churnPod
	add := func(name string, cs ...*churnContainer) { pods = append(pods, &churnPod{name: name, containers: cs}) }

	// A held dependency: app may start only once db's own process runs, a second in.
	add("held",
		plainWaiting("app", 10*time.Second, churnDep{"db", "started"}),
		plainWaiting("db", 10*time.Second, churnDep{"x", "ready"}),
		serving("x", ports.take(t), time.Second))

	// Two dependencies, the slow one last and first.
	for _, order := range [][2]string{{"fast", "slow"}, {"slow", "fast"}} {
		add("two-deps-"+order[1]+"-last",
			plainWaiting("app", 10*time.Second, churnDep{order[0], "ready"}, churnDep{order[1], "ready"}),
			serving("fast", ports.take(t), 100*time.Millisecond),
			serving("slow", ports.take(t), 1200*time.Millisecond))
	}

	// Releases at spread phases of the hook's own 1 s re-read: without a wake-up, about half of
	// them start more than half a second after podorder released them.
	for i, after := range []time.Duration{150, 300, 450, 600, 750, 900} {
		add(fmt.Sprintf("wake-%d", i),
			plainWaiting("app", 10*time.Second, churnDep{"db", "ready"}),
			serving("db", ports.take(t), after*time.Millisecond))
	}

	// db gets ready just after app's deadline (2 s less 0.5 s from its start) and before its hook's
	// (2 s from a little later): a release now is one podorder promised never to record.
	for _, after := range []time.Duration{1300, 1400, 1500, 1600} {
		add(fmt.Sprintf("deadline-%d", after),
			plainWaiting("app", 2*time.Second, churnDep{"db", "ready"}),
			serving("db", ports.take(t), after*time.Millisecond))
	}
	return pods
}

// restartedDependencyPod: db crashed once; app, created after, may start only once db's next
// attempt runs, which is itself held until x's next attempt is ready.
func restartedDependencyPod(port int) *churnPod {
	db := plainWaiting("db", 10*time.Second, churnDep{"x", "ready"})
	db.role, db.exitAfter = crasher, 200*time.Millisecond
	return &churnPod{name: "restarted", containers: []*churnContainer{
		serving("x", port, 200*time.Millisecond),
		db,
		plainWaiting("app", 10*time.Second, churnDep{"db", "started"}),
	}}
}

func (ch *churn) runRestartedDependency(p *churnPod) {
	t := ch.t
	p.pod = ch.env.RunPod(t, p.spec())
	x, db, app := p.containers[0], p.containers[1], p.containers[2]
	ch.create(p, x, 0)
	db0 := ch.create(p, db, 0)
	ch.env.WaitExited(t, db0.ID, 30*time.Second)
	// x dies too: db's next attempt is held until x's next one is ready.
	x0 := x.attempts[0]
	ch.env.StopContainer(t, x0.ID, 0)
	ch.env.WaitExited(t, x0.ID, 30*time.Second)
	ch.create(p, app, 0)
	ch.create(p, db, 1)
	x.listenAfter = time.Second
	ch.create(p, x, 1)
}
