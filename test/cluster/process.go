package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// component is one process the cluster started (etcd, kube-apiserver, …), in its own process
// group, killed by the kernel if the test binary dies, logging to its own file.
type component struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for

	mu       sync.Mutex
	stopping bool // set before a deliberate stop, so its exit is not reported as a crash
}

// startComponent starts bin with args, logging to logPath; onCrash runs if it exits by itself.
func startComponent(name, bin, logPath string, args []string, onCrash func(*component)) (*component, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, logPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
		c.mu.Lock()
		deliberate := c.stopping
		c.mu.Unlock()
		if !deliberate && onCrash != nil {
			onCrash(c)
		}
	}()
	return c, nil
}

// stop sends SIGTERM to the component's process group and SIGKILL after grace.
func (c *component) stop(grace time.Duration) error {
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	select {
	case <-c.exited:
		return nil
	default:
	}
	pgid := c.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", c.name, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-c.exited
	return fmt.Errorf("%s ignored SIGTERM for %s; killed", c.name, grace)
}

// logTail returns the last n lines of the component's log.
func (c *component) logTail(n int) string {
	data, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(no %s log: %v)", c.name, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- %s log (%s, tail) ---\n%s", c.name, c.logPath, strings.Join(lines, "\n"))
}
