package cli

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/plugin/daemon"
	"github.com/podorder/podorder/plugin/podstate"
	"github.com/podorder/podorder/plugin/preflight"
	"github.com/podorder/podorder/plugin/status"
	"github.com/podorder/podorder/plugin/version"
)

// run is one invocation of Main with a daemon that only records that it was started.
type run struct {
	code           int
	stdout, stderr string
	daemonStarted  bool
	cfg            daemon.Config
}

func invoke(t *testing.T, args ...string) run {
	t.Helper()
	var out, errOut bytes.Buffer
	var r run
	r.code = Main(args, Process{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(string) string { return "" },
		RunDaemon: func(cfg daemon.Config, _ *slog.Logger) error {
			r.daemonStarted, r.cfg = true, cfg
			return nil
		},
	})
	r.stdout, r.stderr = out.String(), errOut.String()
	return r
}

// hookBinary is an executable file for --hook-binary, which the daemon checks before it starts.
func hookBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "podorder-hook")
	require.NoError(t, os.WriteFile(path, []byte("#!/bin/true\n"), 0o755))
	return path
}

func TestWhatIsNotACommandStartsNothingAndExits2(t *testing.T) {
	tests := map[string]struct {
		args []string
		says string
	}{
		"no command at all":           {nil, "no command given; the node daemon is `podorder daemon`"},
		"a mistyped command":          {[]string{"deamon"}, `unknown command "deamon"; the commands are: daemon, status, timeline, explain, install-hook, enable-nri, version, help`},
		"an unknown command":          {[]string{"nosuch", "--log-format=json"}, `unknown command "nosuch"`},
		"a command in upper case":     {[]string{"DAEMON"}, `unknown command "DAEMON"`},
		"the old daemon's flags":      {[]string{"--log-format=json", "--probe-host-network"}, "as in `podorder daemon --log-format=json --probe-host-network`"},
		"help about an unknown name":  {[]string{"help", "nosuch"}, `podorder help: unknown command "nosuch"`},
		"a stray daemon argument":     {[]string{"daemon", "help"}, `podorder daemon: unexpected argument "help"`},
		"an unknown daemon flag":      {[]string{"daemon", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		"install-hook short of DEST":  {[]string{"install-hook", "/podorder-hook"}, "podorder install-hook: want SRC and DEST, got 1 arguments"},
		"version with an argument":    {[]string{"version", "now"}, `podorder version: unexpected argument "now"`},
		"explain without a file":      {[]string{"explain"}, "podorder explain: give at least one -f FILE"},
		"status in an unknown form":   {[]string{"status", "-o", "yaml"}, "podorder status: -o yaml: want table or json"},
		"timeline without a pod":      {[]string{"timeline", "-o", "svg"}, "podorder timeline: name one pod as NAMESPACE/NAME"},
		"timeline of two pods":        {[]string{"timeline", "a/b", "c/d"}, "podorder timeline: name one pod"},
		"timeline in an unknown form": {[]string{"timeline", "a/b", "-o", "png"}, "podorder timeline: -o png: want text, svg, json or perfetto"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := invoke(t, tt.args...)
			assert.Equal(t, ExitUsage, r.code)
			assert.False(t, r.daemonStarted, "the daemon must not start")
			assert.Contains(t, r.stderr, tt.says)
			assert.Empty(t, r.stdout, "errors go to standard error")
		})
	}
}

func TestHelpNamesEveryCommandOnOneLineAndExits0(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-help"}, {"-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := invoke(t, args...)
			assert.Equal(t, ExitOK, r.code)
			assert.False(t, r.daemonStarted)
			assert.Empty(t, r.stderr)
			for _, c := range commands() {
				assert.Regexp(t, `(?m)^  `+c.name+` +`+regexp.QuoteMeta(c.summary)+`$`, r.stdout, "help lists %s", c.name)
			}
		})
	}
}

func TestBareUsageListsTheCommandsToo(t *testing.T) {
	r := invoke(t)
	for _, c := range commands() {
		assert.Contains(t, r.stderr, "  "+c.name+" ")
	}
}

func TestEveryCommandsHelpExits0AndStartsNothing(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := invoke(t, args...)
				assert.Equal(t, ExitOK, r.code)
				assert.False(t, r.daemonStarted)
				assert.Empty(t, r.stderr)
				assert.True(t, strings.HasPrefix(r.stdout, "Usage: podorder "+c.name), "usage first:\n%s", r.stdout)
			})
		}
	}
}

func TestTheDaemonsHelpListsItsFlags(t *testing.T) {
	r := invoke(t, "daemon", "--help")
	for _, flag := range []string{"-nri-socket", "-store-dir", "-hook-binary", "-health-addr", "-metrics-addr", "-log-format"} {
		assert.Contains(t, r.stdout, "  "+flag+" ")
	}
}

func TestVersionPrintsTheRelease(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := invoke(t, args...)
			assert.Equal(t, ExitOK, r.code)
			assert.Equal(t, version.Get().String()+"\n", r.stdout)
			assert.True(t, strings.HasPrefix(r.stdout, "podorder "+version.Get().Release), r.stdout)
			assert.False(t, r.daemonStarted)
		})
	}
}

func TestTheDaemonCommandStartsTheDaemonWithItsFlags(t *testing.T) {
	hook := hookBinary(t)
	r := invoke(t, "daemon", "--hook-binary="+hook, "--store-dir=/tmp/po-store", "--nri-socket=/tmp/nri.sock", "--health-addr=", "--log-format=json")
	assert.Equal(t, ExitOK, r.code, r.stderr)
	require.True(t, r.daemonStarted)
	assert.Equal(t, hook, r.cfg.HookBinary)
	assert.Equal(t, "/tmp/po-store", r.cfg.StoreDir)
	assert.Equal(t, "/tmp/nri.sock", r.cfg.NRISocket)
	assert.Empty(t, r.cfg.HealthAddr)
	first, _, _ := strings.Cut(r.stderr, "\n")
	assert.Contains(t, first, `"msg":"podorder starting"`)
	assert.Contains(t, first, `"version":"`+version.Get().Release+`"`, "the daemon's first log line says its version")
}

func TestADaemonThatCannotWorkIsNotStarted(t *testing.T) {
	tests := map[string]struct {
		args []string
		says string
	}{
		"no hook binary":      {[]string{"--hook-binary=/nonexistent/podorder-hook"}, "podorder daemon: --hook-binary"},
		"a bad log format":    {[]string{"--log-format=xml"}, `podorder daemon: --log-format "xml"`},
		"a bad plugin index":  {[]string{"--plugin-index=1"}, `podorder daemon: --plugin-index "1"`},
		"cross-namespace bad": {[]string{"--allow-cross-namespace=nope"}, "podorder daemon: --allow-cross-namespace"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := invoke(t, append([]string{"daemon", "--hook-binary=" + hookBinary(t)}, tt.args...)...)
			assert.Equal(t, ExitUsage, r.code)
			assert.False(t, r.daemonStarted)
			assert.Contains(t, r.stderr, tt.says)
		})
	}
}

func TestTheDaemonStoppingWithAnErrorExits1(t *testing.T) {
	var errOut bytes.Buffer
	code := Main([]string{"daemon", "--hook-binary=" + hookBinary(t)}, Process{
		Stdout: &bytes.Buffer{}, Stderr: &errOut, Getenv: func(string) string { return "" },
		RunDaemon: func(daemon.Config, *slog.Logger) error { return assert.AnError },
	})
	assert.Equal(t, ExitFailed, code)
	assert.Contains(t, errOut.String(), "podorder stopped")
}

func TestInstallHookCopiesTheHook(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "bin", "podorder-hook")
	r := invoke(t, "install-hook", hookBinary(t), dest)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	data, err := os.ReadFile(dest)
	require.NoError(t, err)
	assert.Equal(t, "#!/bin/true\n", string(data))
}

func TestExplainReadsStandardInput(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Main([]string{"explain", "-f", "-"}, Process{
		Stdin: strings.NewReader(`apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {podorder.dev/after.app: db}
spec:
  containers:
  - {name: app, image: app}
  - {name: db, image: db}
`),
		Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" },
	})
	assert.Equal(t, ExitOK, code, errOut.String())
	assert.Contains(t, out.String(), "web")
}

func TestExplainNamesAFileItCannotOpen(t *testing.T) {
	r := invoke(t, "explain", "-f", "/nonexistent.yaml")
	assert.Equal(t, ExitUsage, r.code)
	assert.Equal(t, "podorder explain: open /nonexistent.yaml: no such file or directory\n", r.stderr)
}

func TestExplainReadsDirectoriesFilesAndListsAndSaysWhenThereIsNothingToExplain(t *testing.T) {
	dir := t.TempDir()
	pod := func(name string) string {
		return "kind: Pod\nmetadata: {name: " + name + ", labels: {podorder.dev/after.app: db}}\nspec: {containers: [{name: app}, {name: db}]}\n"
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
		return path
	}
	write("manifests/b.yaml", pod("b"))
	write("manifests/a.yml", pod("a"))
	write("manifests/c.json", `{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "c"}, "spec": {"containers": [{"name": "x"}]}}]}`)
	write("manifests/notes.txt", pod("not-read"))
	write("manifests/nested/d.yaml", pod("not-read-either"))
	single := write("single.yaml", pod("single"))
	config := write("config.yaml", "kind: ConfigMap\nmetadata: {name: settings}\n")
	write("empty/README", "")
	cross := write("cross.yaml", "kind: Pod\nmetadata: {name: x, namespace: team-a, annotations: {podorder.dev/after.app: \"pod(shared/app=auth)\"}}\nspec: {containers: [{name: app}]}\n")

	tests := map[string]struct {
		args    []string
		code    int
		stdout  []string
		stderr  string
		exclude []string
	}{
		"a directory: its yaml, yml and json files, sorted, not recursive": {
			args:    []string{"-f", filepath.Join(dir, "manifests")},
			stdout:  []string{"Pod/a (", "Pod/b (", "Pod/c ("},
			exclude: []string{"not-read"},
		},
		"-f given several times": {
			args:   []string{"-f", single, "-f", filepath.Join(dir, "manifests", "b.yaml")},
			stdout: []string{"Pod/single", "Pod/b"},
		},
		"JSON": {
			args:   []string{"-o", "json", "-f", single},
			stdout: []string{`"name": "Pod/single"`, `"shutdownOrder": {`},
		},
		"no pod template at all exits 2": {
			args:   []string{"-f", config},
			code:   ExitUsage,
			stderr: "no pod template in " + config + ": nothing to explain",
		},
		"a directory without manifests": {
			args:   []string{"-f", filepath.Join(dir, "empty")},
			code:   ExitUsage,
			stderr: "no *.yaml, *.yml or *.json file in the directory",
		},
		"an output format explain does not write": {
			args:   []string{"-o", "yaml", "-f", single},
			code:   ExitUsage,
			stderr: "-o yaml: want text, json, dot or svg",
		},
		"a cross-namespace dependency is a warning as shipped": {
			args:   []string{"-f", cross},
			stdout: []string{"warning: container app: podorder as the DaemonSet ships it (no --allow-cross-namespace rules) refuses to create it"},
		},
		"and none with the node's rules": {
			args:    []string{"--allow-cross-namespace", "team-a=shared", "-f", cross},
			exclude: []string{"warning:"},
		},
		"a malformed rule": {
			args:   []string{"--allow-cross-namespace", "team-a", "-f", cross},
			code:   ExitUsage,
			stderr: "cross-namespace rule",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := invoke(t, append([]string{"explain"}, tt.args...)...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			last := -1
			for _, s := range tt.stdout {
				i := strings.Index(r.stdout, s)
				assert.Greater(t, i, last, "%q in order in:\n%s", s, r.stdout)
				last = i
			}
			for _, s := range tt.exclude {
				assert.NotContains(t, r.stdout, s)
			}
			if tt.stderr != "" {
				assert.Contains(t, r.stderr, tt.stderr)
			}
		})
	}
}

func TestTimelineDrawsThePodTheDaemonServesInEachForm(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	tl := podstate.TimelineReport{Pod: "default/shop", UID: "u1", At: at.Add(time.Second), Entries: []podstate.TimelineEntry{
		{At: at, Container: "db", ID: "db-1", Kind: podstate.TimelineCreated},
		{At: at.Add(10 * time.Millisecond), Container: "db", ID: "db-1", Kind: podstate.TimelineRunning},
		{At: at.Add(800 * time.Millisecond), Container: "db", ID: "db-1", Kind: podstate.TimelineReady, Detail: "probe passed: tcp:5432"},
	}}
	require.NoError(t, status.Serve(t.Context(), status.Socket(dir), func() []podstate.PodReport { return nil }, func() []preflight.Verdict { return nil },
		func(pod string) (podstate.TimelineReport, bool) { return tl, pod == "default/shop" }, slog.New(slog.DiscardHandler)))

	r := invoke(t, "timeline", "default/shop", "-store-dir", dir)
	require.Equal(t, ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "* db #0")
	assert.Contains(t, r.stdout, "ready at 800ms (probe passed: tcp:5432)")
	for _, format := range []string{"svg", "json", "perfetto"} {
		r := invoke(t, "timeline", "-o", format, "-store-dir", dir, "default/shop")
		require.Equal(t, ExitOK, r.code, r.stderr)
		assert.NotEmpty(t, r.stdout)
	}
	r = invoke(t, "timeline", "default/other", "-store-dir", dir)
	assert.Equal(t, ExitFailed, r.code)
	assert.Contains(t, r.stderr, "pod default/other: podorder on this node does not know it")
}
