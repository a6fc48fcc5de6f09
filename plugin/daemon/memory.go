package daemon

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
)

// MemoryLimitEnv names the variable the DaemonSet fills from the container's memory limit (downward
// API, resourceFieldRef limits.memory, in bytes).
const MemoryLimitEnv = "PODORDER_MEMORY_LIMIT"

// memoryLimitShare is the part of the container's limit the Go runtime aims to stay under: the GC
// works harder as the heap nears it, so a burst (a pod's probe answer, a relist) is collected
// before the kernel's OOM killer ends the daemon, and with it every hold on the node. The rest is
// left for what the runtime does not count: thread stacks outside the heap, and page cache.
const memoryLimitShare = 0.9

// SetMemoryLimit applies the container's memory limit to the Go runtime, unless GOMEMLIMIT already
// sets one: an operator's explicit value wins. It returns the soft limit set, 0 when none.
func SetMemoryLimit(getenv func(string) string, log *slog.Logger) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		log.Info("memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return 0, nil
	}
	v := strings.TrimSpace(getenv(MemoryLimitEnv))
	if v == "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("%s=%q: want the container's memory limit in bytes (resourceFieldRef limits.memory, divisor 1)", MemoryLimitEnv, v)
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("Go memory limit set from the container's", "container_limit_bytes", limit, "soft_limit_bytes", soft)
	return soft, nil
}
