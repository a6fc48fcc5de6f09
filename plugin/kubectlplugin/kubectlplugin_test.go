package kubectlplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podorder/podorder/plugin/explain"
)

// execCall is one command run in a pod.
type execCall struct {
	namespace, name, container string
	command                    []string
}

// recordingExec records what it is asked to run, prints stdout and exits with code.
type recordingExec struct {
	calls  []execCall
	stdout string
	code   int
}

func (e *recordingExec) Exec(_ context.Context, namespace, name, container string, command []string, stdout, _ io.Writer) (int, error) {
	e.calls = append(e.calls, execCall{namespace, name, container, command})
	_, err := io.WriteString(stdout, e.stdout)
	return e.code, err
}

// run is one invocation of Main against a fake cluster.
type run struct {
	code           int
	stdout, stderr string
	connected      bool
}

// kubectlPodorder runs Main with args against a cluster of objects; the kubeconfig's context is in
// namespace shop.
func kubectlPodorder(t *testing.T, exec *recordingExec, objects []runtime.Object, args ...string) run {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "config")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx, context: {cluster: c, user: u, namespace: shop}}]
current-context: ctx
`), 0o600))
	t.Setenv("KUBECONFIG", kubeconfig)
	var out, errOut bytes.Buffer
	var r run
	r.code = Main(t.Context(), args, Process{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errOut,
		Connect: func(cfg clientcmd.ClientConfig) (Cluster, error) {
			r.connected = true
			ns, _, err := cfg.Namespace()
			if err != nil {
				return Cluster{}, err
			}
			return Cluster{Client: fake.NewClientset(objects...), Exec: exec, Namespace: ns}, nil
		},
		Now: func() time.Time { return t0.Add(90 * time.Second) },
	})
	r.stdout, r.stderr = out.String(), errOut.String()
	return r
}

func TestAWrongCommandLineExits2WithoutAskingTheCluster(t *testing.T) {
	tests := map[string]struct {
		args []string
		says string
	}{
		"no command at all":              {nil, "kubectl podorder: no command given"},
		"an unknown command":             {[]string{"hold"}, `unknown command "hold"; the commands are: held, status, explain, version, help`},
		"help about an unknown name":     {[]string{"help", "nosuch"}, `kubectl podorder help: unknown command "nosuch"`},
		"an unknown flag":                {[]string{"held", "--nodes"}, "kubectl podorder held: unknown flag: --nodes"},
		"a stray argument":               {[]string{"held", "shop"}, `kubectl podorder held: unexpected argument "shop": it takes flags only`},
		"held in an unknown form":        {[]string{"held", "-o", "yaml"}, "kubectl podorder held: -o yaml: want table or json"},
		"held in all namespaces and one": {[]string{"held", "-A", "-n", "shop"}, "kubectl podorder held: -A lists every namespace, -n one: give one of them"},
		"status of nothing":              {[]string{"status"}, "kubectl podorder status: give one of --node NODE and --pod [NAMESPACE/]POD"},
		"status of a node and a pod":     {[]string{"status", "--node", "n1", "--pod", "shop/web"}, "give one of --node NODE and --pod"},
		"explain without a file":         {[]string{"explain"}, "kubectl podorder explain: give at least one -f FILE"},
		"explain of a missing file":      {[]string{"explain", "-f", "/nonexistent.yaml"}, "kubectl podorder explain: open /nonexistent.yaml: no such file or directory"},
		"version with an argument":       {[]string{"version", "now"}, `kubectl podorder version: unexpected argument "now"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			r := kubectlPodorder(t, &recordingExec{}, nil, tt.args...)
			assert.Equal(t, ExitUsage, r.code)
			assert.Contains(t, r.stderr, tt.says)
			assert.Empty(t, r.stdout, "errors go to standard error")
			assert.False(t, r.connected, "nothing was asked of the cluster")
		})
	}
}

func TestHelpListsTheCommandsOrOneCommandsFlagsAndExits0(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := kubectlPodorder(t, &recordingExec{}, nil, args...)
		assert.Equal(t, ExitOK, r.code, args)
		assert.Contains(t, r.stdout, "Usage: kubectl podorder COMMAND", args)
		for _, c := range []string{"held", "status", "explain", "version", "help"} {
			assert.Regexp(t, `(?m)^  `+c+` +\S`, r.stdout, args)
		}
	}
	for _, args := range [][]string{{"help", "status"}, {"status", "--help"}} {
		r := kubectlPodorder(t, &recordingExec{}, nil, args...)
		assert.Equal(t, ExitOK, r.code, args)
		assert.Contains(t, r.stdout, "Usage: kubectl podorder status --node NODE | --pod [NAMESPACE/]POD", args)
		assert.Contains(t, r.stdout, "--podorder-namespace string", args)
		assert.Contains(t, r.stdout, "kubectl's\nconnection flags --kubeconfig, --context", args)
		assert.NotContains(t, r.stdout, "--insecure-skip-tls-verify ", "connection flags are named, not listed one by one")
		assert.Empty(t, r.stderr)
	}
}

func TestVersionPrintsTheRelease(t *testing.T) {
	r := kubectlPodorder(t, &recordingExec{}, nil, "version")
	assert.Equal(t, ExitOK, r.code)
	assert.Regexp(t, `^podorder \d+\.\d+\.\d+`, r.stdout)
}

func TestExplainIsPodorderExplain(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte(`apiVersion: v1
kind: Pod
metadata:
  name: shop
  labels: {podorder.dev/after.web: db}
spec:
  containers:
  - {name: web, image: web}
  - {name: db, image: db, readinessProbe: {tcpSocket: {port: 5432}}}
`), 0o644))
	r := kubectlPodorder(t, &recordingExec{}, nil, "explain", "-f", manifest)
	assert.Equal(t, ExitOK, r.code, r.stderr)
	ws, err := explain.ReadFiles(nil, []string{manifest}, explain.Options{})
	require.NoError(t, err)
	var want bytes.Buffer
	require.NoError(t, explain.Write(&want, ws))
	assert.Equal(t, want.String(), r.stdout)
	assert.False(t, r.connected, "explain is offline")
}

func heldCluster() []runtime.Object {
	return []runtime.Object{
		withCondition("shop", "web", "n1", corev1.ConditionFalse, "web waits for api (ready) since 10:00:00"),
		withCondition("shop", "api", "n1", corev1.ConditionTrue, "no container is held by podorder"),
		withCondition("batch", "report", "n2", corev1.ConditionFalse, "report waits for db (completed) since 10:00:00"),
	}
}

func TestHeldListsTheHeldPodsOfTheContextsNamespaceOfOneOrOfAll(t *testing.T) {
	r := kubectlPodorder(t, &recordingExec{}, heldCluster(), "held")
	assert.Equal(t, ExitOK, r.code, r.stderr)
	assert.Equal(t, `NAMESPACE  POD  NODE  SINCE      MESSAGE
shop       web  n1    1m30s ago  web waits for api (ready) since 10:00:00
`, r.stdout, "the kubeconfig context's namespace")

	r = kubectlPodorder(t, &recordingExec{}, heldCluster(), "held", "-n", "batch")
	assert.Equal(t, ExitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "batch      report")
	assert.NotContains(t, r.stdout, "shop")

	r = kubectlPodorder(t, &recordingExec{}, heldCluster(), "held", "-A", "-o", "json")
	assert.Equal(t, ExitOK, r.code, r.stderr)
	var held []HeldPod
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &held))
	assert.Equal(t, []HeldPod{
		{Namespace: "batch", Pod: "report", Node: "n2", Since: t0, Message: "report waits for db (completed) since 10:00:00"},
		{Namespace: "shop", Pod: "web", Node: "n1", Since: t0, Message: "web waits for api (ready) since 10:00:00"},
	}, held)
}

func TestHeldWithNothingHeldSaysSoOnStandardErrorAndExits0(t *testing.T) {
	r := kubectlPodorder(t, &recordingExec{}, heldCluster(), "held", "--namespace=quiet")
	assert.Equal(t, ExitOK, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, "No pod is held by podorder in namespace quiet.\n", r.stderr)

	r = kubectlPodorder(t, &recordingExec{}, heldCluster(), "held", "-n", "quiet", "-o", "json")
	assert.Equal(t, ExitOK, r.code)
	assert.Equal(t, "[]\n", r.stdout)
}

func statusCluster() []runtime.Object {
	return append(heldCluster(), node("n1"), node("n2"),
		daemonPod("podorder-system", "podorder-aaaaa", "n1", corev1.PodRunning),
		daemonPod("podorder-system", "podorder-bbbbb", "n2", corev1.PodRunning),
		daemonPod("podorder-helm", "podorder-ccccc", "n2", corev1.PodRunning),
	)
}

func TestStatusRunsPodorderStatusInTheDaemonPodOfTheNode(t *testing.T) {
	const table = "POD  CONTAINER  STATE  WAITS FOR  SINCE  TIMEOUT LEFT\n"
	tests := map[string]struct {
		args []string
		want execCall
	}{
		"of a node": {[]string{"status", "--node", "n1"},
			execCall{"podorder-system", "podorder-aaaaa", "podorder", []string{"/podorder", "status", "-o", "table"}}},
		"of a pod's node, every container, as JSON": {[]string{"status", "--pod", "batch/report", "-a", "-o", "json"},
			execCall{"podorder-system", "podorder-bbbbb", "podorder", []string{"/podorder", "status", "-o", "json", "-a"}}},
		"of a pod in the context's namespace": {[]string{"status", "--pod", "web"},
			execCall{"podorder-system", "podorder-aaaaa", "podorder", []string{"/podorder", "status", "-o", "table"}}},
		"of a pod in the namespace of -n": {[]string{"status", "--pod", "report", "-n", "batch"},
			execCall{"podorder-system", "podorder-bbbbb", "podorder", []string{"/podorder", "status", "-o", "table"}}},
		"installed by Helm in another namespace": {[]string{"status", "--node", "n2", "--podorder-namespace", "podorder-helm"},
			execCall{"podorder-helm", "podorder-ccccc", "podorder", []string{"/podorder", "status", "-o", "table"}}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			exec := &recordingExec{stdout: table}
			r := kubectlPodorder(t, exec, statusCluster(), tt.args...)
			assert.Equal(t, ExitOK, r.code, r.stderr)
			assert.Equal(t, []execCall{tt.want}, exec.calls)
			assert.Equal(t, table, r.stdout, "the daemon's answer, as it printed it")
		})
	}
}

func TestStatusExitsWithTheDaemonCommandsCodeOr1WhenItFindsNoDaemon(t *testing.T) {
	r := kubectlPodorder(t, &recordingExec{code: 1}, statusCluster(), "status", "--node", "n1")
	assert.Equal(t, 1, r.code, "`podorder status` in the pod failed")

	exec := &recordingExec{}
	r = kubectlPodorder(t, exec, statusCluster(), "status", "--node", "n1", "--podorder-namespace", "kube-system")
	assert.Equal(t, ExitFailed, r.code)
	assert.Empty(t, exec.calls)
	assert.Contains(t, r.stderr, "kubectl podorder status: no podorder pod on node n1: no pod in namespace kube-system matches app.kubernetes.io/name=podorder there; if podorder is installed in another namespace (a Helm release's), pass --podorder-namespace NAMESPACE")

	r = kubectlPodorder(t, exec, statusCluster(), "status", "--pod", "shop/nosuch")
	assert.Equal(t, ExitFailed, r.code)
	assert.Equal(t, "kubectl podorder status: there is no pod nosuch in namespace shop\n", r.stderr)
}

func TestConnectionFailuresExit1NamingTheCommand(t *testing.T) {
	var errOut bytes.Buffer
	code := Main(t.Context(), []string{"held", "-A"}, Process{
		Stdout: io.Discard, Stderr: &errOut,
		Connect: func(clientcmd.ClientConfig) (Cluster, error) {
			return Cluster{}, fmt.Errorf("load the kubeconfig: no configuration")
		},
	})
	assert.Equal(t, ExitFailed, code)
	assert.Equal(t, "kubectl podorder held: load the kubeconfig: no configuration\n", errOut.String())
}
