package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/nriconfig"
)

const nriOff = `version = 3
# the distribution turned NRI off
[plugins."io.containerd.nri.v1.nri"]
  disable = true
`

// fakeService is containerd's service as systemd would report and restart it.
type fakeService struct {
	since      time.Time
	restartErr error
	restarts   int
}

func (s *fakeService) ActiveSince(context.Context) (time.Time, error) { return s.since, nil }
func (s *fakeService) Restart(context.Context) error {
	s.restarts++
	return s.restartErr
}

// enableNRI runs `podorder enable-nri --config FILE args...` on a file holding content.
func enableNRI(t *testing.T, svc *fakeService, path string, args ...string) run {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Main(append([]string{"enable-nri", "--config", path}, args...), Process{
		Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" },
		Service: func(unit string) nriconfig.Service {
			assert.Equal(t, "containerd.service", unit)
			return svc
		},
	})
	return run{code: code, stdout: out.String(), stderr: errOut.String()}
}

func configFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return path
}

func read(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

func TestEnableNRIPatchesOnceKeepsABackupAndSaysToRestartContainerd(t *testing.T) {
	path := configFile(t, nriOff)
	r := enableNRI(t, nil, path)
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, path+": NRI is off: disable = true\n--- "+path+"\n+++ "+path+" (NRI on)\n@@ line 4 @@\n-  disable = true\n+  disable = false\n"+
		"wrote "+path+"; the original is in "+path+".podorder-backup\n"+
		"containerd reads its config only when it starts: NRI comes on when containerd restarts. On the node, run\n  systemctl restart containerd\n"+
		"(running containers keep running; CRI calls pause for the seconds containerd takes to start)\n", r.stdout)
	assert.Equal(t, strings.Replace(nriOff, "disable = true", "disable = false", 1), read(t, path))
	assert.Equal(t, nriOff, read(t, path+".podorder-backup"))

	again := enableNRI(t, nil, path)
	require.Equal(t, ExitOK, again.code, again.stderr)
	assert.Equal(t, path+": NRI is on: its section sets neither disable nor disable_connections to true; nothing to change\n", again.stdout)
}

func TestEnableNRIDryRunWritesNothing(t *testing.T) {
	path := configFile(t, nriOff)
	svc := &fakeService{}
	r := enableNRI(t, svc, path, "--dry-run", "--restart")
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "-  disable = true\n+  disable = false\ndry run: nothing written. containerd reads its config only when it starts")
	assert.Equal(t, nriOff, read(t, path))
	assert.NoFileExists(t, path+".podorder-backup")
	assert.Zero(t, svc.restarts)
}

func TestEnableNRIRefusesWithTheReasonAndExits1(t *testing.T) {
	v1 := "version = 1\n[plugins.nri]\n  disable = true\n"
	path := configFile(t, v1)
	r := enableNRI(t, nil, path)
	assert.Equal(t, ExitFailed, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "podorder enable-nri: "+path+": refused: it is a version 1 config, containerd 1.x's format; podorder needs containerd 2.x")
	assert.Equal(t, v1, read(t, path), "untouched")

	missing := enableNRI(t, nil, filepath.Join(t.TempDir(), "config.toml"))
	assert.Equal(t, ExitFailed, missing.code)
	assert.Contains(t, missing.stderr, "no such file or directory")
}

func TestEnableNRIRestartsContainerdOnlyWhenItsConfigChangedSinceItStarted(t *testing.T) {
	t.Run("this run changed the file", func(t *testing.T) {
		svc := &fakeService{}
		r := enableNRI(t, svc, configFile(t, nriOff), "--restart")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, 1, svc.restarts)
		assert.Contains(t, r.stdout, "restarted containerd.service: NRI is on\n")
		assert.NotContains(t, r.stdout, "On the node, run")
	})
	t.Run("on already, containerd started since", func(t *testing.T) {
		svc := &fakeService{since: time.Now().Add(time.Hour)}
		r := enableNRI(t, svc, configFile(t, "version = 3\n"), "--restart")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Zero(t, svc.restarts)
		assert.Contains(t, r.stdout, "containerd.service started after the file last changed: no restart\n")
	})
	t.Run("on already, but patched after containerd started", func(t *testing.T) {
		svc := &fakeService{since: time.Now().Add(-time.Hour)}
		r := enableNRI(t, svc, configFile(t, "version = 3\n"), "--restart")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.Equal(t, 1, svc.restarts)
		assert.Contains(t, r.stdout, "the file changed after containerd.service started\nrestarting containerd.service")
	})
	t.Run("the restart fails", func(t *testing.T) {
		svc := &fakeService{restartErr: errors.New("systemd's restart of containerd.service ended \"failed\"")}
		path := configFile(t, nriOff)
		r := enableNRI(t, svc, path, "--restart")
		assert.Equal(t, ExitFailed, r.code)
		assert.Contains(t, r.stderr, `ended "failed"; the file is patched: restart containerd yourself (systemctl restart containerd)`)
		assert.Contains(t, read(t, path), "disable = false")
	})
}
