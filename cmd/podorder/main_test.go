package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/build/image"
)

// stampedRelease is what the test's build injects, as `make build` and build/image inject VERSION.
const stampedRelease = "0.0.0-stamped"

// sandbox is the built binary and an environment in which `podorder daemon` could start for real
// (an executable hook binary, a store and NRI socket under a temporary directory, nothing to
// listen on, no Kubernetes API): a command that started the daemon by mistake would create the
// store and run until killed.
type sandbox struct {
	bin   string
	store string
	env   []string
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "podorder")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", image.LDFlags(stampedRelease), "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	hook := filepath.Join(dir, "podorder-hook")
	require.NoError(t, os.WriteFile(hook, []byte("#!/bin/true\n"), 0o755))
	home := filepath.Join(dir, "home")
	require.NoError(t, os.Mkdir(home, 0o755))
	s := sandbox{bin: bin, store: filepath.Join(dir, "store")}
	// Nothing inherited: no NODE_NAME, no PODORDER_* of the machine.
	s.env = []string{
		"HOME=" + home,
		"PODORDER_STORE_DIR=" + s.store,
		"PODORDER_NRI_SOCKET=" + filepath.Join(dir, "nri.sock"),
		"PODORDER_HOOK_BINARY=" + hook,
		"PODORDER_HEALTH_ADDR=",
		"PODORDER_METRICS_ADDR=",
		"PODORDER_LOG_FORMAT=json",
	}
	return s
}

// command is the binary run with args in the sandbox, killed if it outlives ctx.
func (s sandbox) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = s.env
	cmd.Dir = filepath.Dir(s.bin)
	return cmd
}

func TestTheBinaryStartsTheDaemonOnlyWhenAskedTo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the podorder binary")
	}
	s := newSandbox(t)
	tests := map[string]struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		"bare podorder":            {nil, 2, "", "no command given; the node daemon is `podorder daemon`"},
		"an unknown command":       {[]string{"nosuch"}, 2, "", `unknown command "nosuch"; the commands are: daemon, status, timeline, explain, install-hook, enable-nri, version, help`},
		"the daemon's flags alone": {[]string{"--log-format=json"}, 2, "", "`podorder daemon --log-format=json`"},
		"help":                     {[]string{"help"}, 0, "  daemon ", ""},
		"--help":                   {[]string{"--help"}, 0, "  explain ", ""},
		"-h":                       {[]string{"-h"}, 0, "  status ", ""},
		"the daemon's help":        {[]string{"daemon", "--help"}, 0, "Usage: podorder daemon [flags]", ""},
		"status's help":            {[]string{"status", "--help"}, 0, "Usage: podorder status", ""},
		"explain's help":           {[]string{"explain", "-h"}, 0, "Usage: podorder explain", ""},
		"install-hook's help":      {[]string{"install-hook", "--help"}, 0, "Usage: podorder install-hook SRC DEST", ""},
		"version":                  {[]string{"version"}, 0, "podorder " + stampedRelease + " (go", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := s.command(ctx, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			require.NoError(t, ctx.Err(), "podorder %s still ran after 10 s: it started the daemon", strings.Join(tt.args, " "))
			code := 0
			if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
				code = exit.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.code, code, "stderr: %s", stderr.String())
			assert.Contains(t, stdout.String(), tt.stdout)
			assert.Contains(t, stderr.String(), tt.stderr)
			assert.NoDirExists(t, s.store, "the daemon's store was created: the daemon started")
		})
	}
}

// The control for the test above: in the same sandbox, `podorder daemon` does start, says its
// version in its first log line, creates its store, and stops cleanly on SIGTERM.
func TestTheDaemonCommandStartsTheDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the podorder binary")
	}
	s := newSandbox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := s.command(ctx, "daemon")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var lines []map[string]any
	scanner := bufio.NewScanner(stderr)
	// Run logs the failed NRI connection (there is no runtime) after it has created the store.
	for scanner.Scan() {
		var line map[string]any
		require.NoError(t, json.Unmarshal(scanner.Bytes(), &line), "a JSON log line: %s", scanner.Text())
		lines = append(lines, line)
		if strings.HasPrefix(line["msg"].(string), "cannot connect to the runtime's NRI socket") {
			break
		}
	}
	require.NotEmpty(t, lines, "the daemon logged nothing")
	assert.Equal(t, "podorder starting", lines[0]["msg"], "the first log line")
	assert.Equal(t, stampedRelease, lines[0]["version"], "the first log line says the version")
	assert.DirExists(t, s.store)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	// Read to the end, which comes when the daemon exits (or ctx kills it), before Wait closes the pipe.
	_, _ = io.Copy(io.Discard, stderr)
	require.NoError(t, cmd.Wait(), "the daemon exits 0 on SIGTERM")
	require.NoError(t, ctx.Err())
}
