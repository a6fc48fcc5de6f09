package kubernetes

import (
	"fmt"
	"sync"
	"time"

	"github.com/podorder/podorder/test/harness"
)

// daemonStats is what the campaign watches of the node's podorder daemon, with the API on.
type daemonStats struct{ rssKiB, threads int }

func (s daemonStats) String() string {
	return fmt.Sprintf("VmRSS %.1f MiB, %d threads", float64(s.rssKiB)/1024, s.threads)
}

// sampleDaemon reads the memory and threads of the podorder daemon that runs now, if one does.
func sampleDaemon() (daemonStats, bool) {
	pids := daemonPIDs()
	if len(pids) == 0 {
		return daemonStats{}, false
	}
	status, err := harness.ProcStatus(pids[0])
	if err != nil {
		return daemonStats{}, false
	}
	s := daemonStats{rssKiB: status["VmRSS"], threads: status["Threads"]}
	return s, s.rssKiB > 0
}

// peakSampler keeps the peak of the daemon's stats, whichever of this release's daemons runs,
// every 200 ms until stop.
type peakSampler struct {
	mu   sync.Mutex
	peak daemonStats
	stop chan struct{}
	done chan struct{}
}

func startPeakSampler() *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			if s, ok := sampleDaemon(); ok {
				p.mu.Lock()
				p.peak.rssKiB, p.peak.threads = max(p.peak.rssKiB, s.rssKiB), max(p.peak.threads, s.threads)
				p.mu.Unlock()
			}
			select {
			case <-p.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return p
}

// end stops sampling and returns the peak.
func (p *peakSampler) end() daemonStats {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}
