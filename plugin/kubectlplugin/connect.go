package kubectlplugin

import (
	"context"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/podorder/podorder/plugin/version"
)

// Cluster is what the commands that read the cluster use.
type Cluster struct {
	Client kubernetes.Interface
	Exec   Executor
	// Namespace is the one -n names, else the kubeconfig context's.
	Namespace string
}

// Executor runs a command in a pod's container, as `kubectl exec` does.
type Executor interface {
	// Exec runs command in container of pod namespace/name, streaming its standard output and error,
	// and returns its exit code; err is set when it could not be run or its streams broke.
	Exec(ctx context.Context, namespace, name, container string, command []string, stdout, stderr io.Writer) (code int, err error)
}

// Connect opens the cluster that the kubeconfig and the connection flags in cfg name.
func Connect(cfg clientcmd.ClientConfig) (Cluster, error) {
	rc, err := cfg.ClientConfig()
	if err != nil {
		return Cluster{}, fmt.Errorf("load the kubeconfig: %w", err)
	}
	namespace, _, err := cfg.Namespace()
	if err != nil {
		return Cluster{}, fmt.Errorf("load the kubeconfig's namespace: %w", err)
	}
	rc.UserAgent = "kubectl-podorder/" + version.Get().Release
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return Cluster{}, fmt.Errorf("create the Kubernetes client: %w", err)
	}
	return Cluster{Client: client, Exec: podExec{config: rc, client: client}, Namespace: namespace}, nil
}

// podExec runs commands through the pods/exec subresource: over WebSocket, or SPDY from an API
// server that cannot upgrade to WebSocket, as kubectl does.
type podExec struct {
	config *rest.Config
	client kubernetes.Interface
}

func (e podExec) Exec(ctx context.Context, namespace, name, container string, command []string, stdout, stderr io.Writer) (int, error) {
	url := e.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdout: true, Stderr: true}, scheme.ParameterCodec).
		URL()
	spdy, err := remotecommand.NewSPDYExecutor(e.config, "POST", url)
	if err != nil {
		return 0, fmt.Errorf("exec in %s/%s: %w", namespace, name, err)
	}
	// WebSocket upgrades are GET requests (RFC 6455).
	ws, err := remotecommand.NewWebSocketExecutor(e.config, "GET", url.String())
	if err != nil {
		return 0, fmt.Errorf("exec in %s/%s: %w", namespace, name, err)
	}
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return 0, fmt.Errorf("exec in %s/%s: %w", namespace, name, err)
	}
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var exit utilexec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitStatus(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("exec in %s/%s: %w", namespace, name, err)
	}
	return 0, nil
}
