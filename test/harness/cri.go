package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criTimeout is kubelet's default runtime request timeout.
const criTimeout = 2 * time.Minute

// Kubelet's labels and annotations on sandboxes and containers.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

// PodSpec is the part of a Kubernetes pod that the harness turns into CRI calls.
type PodSpec struct {
	Name, Namespace, UID string // Namespace defaults to "default", UID to one derived from Name
	Labels, Annotations  map[string]string
	Containers           []ContainerSpec
	// PodNetwork runs the pod in a network namespace of its own (the Env needs
	// Options.PodNetwork); otherwise it shares the host's, as a hostNetwork pod does.
	PodNetwork bool
	// Attempt is the sandbox's CRI metadata attempt: kubelet makes a new one when the last failed.
	Attempt uint32
}

// ContainerSpec is one container of a PodSpec; it always runs WorkloadImage.
type ContainerSpec struct {
	Name           string
	Args           []string // arguments after `/workload run`
	RunAsUser      *int64
	ReadOnlyRootfs bool
	Attempt        uint32 // CRI metadata attempt (kubelet's restart count)
	// Mounts are host paths bind-mounted into the container, as a hostPath volume.
	Mounts []*runtimeapi.Mount
}

// Pod is a running pod sandbox and the containers the harness created in it.
type Pod struct {
	ID     string
	Spec   PodSpec
	Config *runtimeapi.PodSandboxConfig
	// LogDir is the sandbox's log_directory; container logs are <name>_<attempt>.log in it.
	LogDir     string
	Containers []*Container
	// mu guards Containers: kubelet, and the tests, create a pod's containers from several
	// goroutines (a restart while the next container is created).
	mu sync.Mutex
}

// Container is the outcome of creating and starting one container attempt.
type Container struct {
	Spec    ContainerSpec
	ID      string // empty if CreateContainer failed
	LogPath string // absolute CRI log file
	// CreateErr and StartErr are the CRI errors; a failed create skips the start.
	CreateErr, StartErr error
	// CreateTook and StartTook are how long the CRI calls took.
	CreateTook, StartTook time.Duration
	// CreateAt and StartAt are when the CRI calls were sent; StartAt is zero when no start was made.
	CreateAt, StartAt time.Time
}

// Container returns the last attempt of the named container, or nil.
func (p *Pod) Container(name string) *Container {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.Containers) - 1; i >= 0; i-- {
		if p.Containers[i].Spec.Name == name {
			return p.Containers[i]
		}
	}
	return nil
}

// RunPod runs a pod sandbox (on the host network unless spec.PodNetwork), then creates and starts
// its containers one after the other in spec order as kubelet's SyncPod does. Container errors are
// recorded, not fatal.
func (e *Env) RunPod(t testing.TB, spec PodSpec) *Pod {
	t.Helper()
	pod, err := e.runSandbox(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Spec.Containers {
		e.CreateStartContainer(t, pod, c)
	}
	return pod
}

// runSandbox creates the log directory and runs the pod sandbox of spec, defaults filled in.
func (e *Env) runSandbox(spec PodSpec) (*Pod, error) {
	if spec.Namespace == "" {
		spec.Namespace = "default"
	}
	if spec.UID == "" {
		spec.UID = "uid-" + spec.Namespace + "-" + spec.Name
	}
	logDir := filepath.Join(e.Dir, "pods", spec.Namespace+"_"+spec.Name+"_"+spec.UID)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir of pod %s: %w", spec.Name, err)
	}
	labels := map[string]string{LabelPodName: spec.Name, LabelPodNamespace: spec.Namespace, LabelPodUID: spec.UID}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	// Like kubelet, no Hostname: a host-network pod shares the node's UTS namespace.
	network := networkMode(spec)
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: spec.Name, Namespace: spec.Namespace, Uid: spec.UID, Attempt: spec.Attempt},
		LogDirectory: logDir,
		Labels:       labels,
		Annotations:  spec.Annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent: e.cgroup + "/pod" + spec.UID,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: network,
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
			},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	res, err := e.Runtime.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	return &Pod{ID: res.PodSandboxId, Spec: spec, Config: cfg, LogDir: logDir}, nil
}

// networkMode is kubelet's choice for a pod's sandbox and its containers.
func networkMode(spec PodSpec) runtimeapi.NamespaceMode {
	if spec.PodNetwork {
		return runtimeapi.NamespaceMode_POD
	}
	return runtimeapi.NamespaceMode_NODE
}

// CreateStartContainer creates and starts one container attempt in pod (a restart when
// spec.Attempt > 0) and appends it to pod.Containers.
func (e *Env) CreateStartContainer(t testing.TB, pod *Pod, spec ContainerSpec) *Container {
	t.Helper()
	logName := fmt.Sprintf("%s_%d.log", spec.Name, spec.Attempt)
	c := &Container{Spec: spec, LogPath: filepath.Join(pod.LogDir, logName)}
	pod.mu.Lock()
	pod.Containers = append(pod.Containers, c)
	pod.mu.Unlock()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: spec.Name, Attempt: spec.Attempt},
		Image:    &runtimeapi.ImageSpec{Image: WorkloadImage, UserSpecifiedImage: WorkloadImage},
		Args:     spec.Args,
		Mounts:   spec.Mounts,
		LogPath:  logName,
		Labels: map[string]string{
			LabelContainerName: spec.Name,
			LabelPodName:       pod.Spec.Name,
			LabelPodNamespace:  pod.Spec.Namespace,
			LabelPodUID:        pod.Spec.UID,
		},
		Annotations: map[string]string{
			"io.kubernetes.container.restartCount":             strconv.Itoa(int(spec.Attempt)),
			"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
			"io.kubernetes.container.terminationMessagePolicy": "File",
			"io.kubernetes.pod.terminationGracePeriod":         "30",
		},
		Linux: &runtimeapi.LinuxContainerConfig{
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{
					Network: networkMode(pod.Spec),
					Pid:     runtimeapi.NamespaceMode_CONTAINER,
					Ipc:     runtimeapi.NamespaceMode_POD,
				},
				ReadonlyRootfs: spec.ReadOnlyRootfs,
			},
		},
	}
	if spec.RunAsUser != nil {
		cfg.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: *spec.RunAsUser}
	}

	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	began := time.Now()
	c.CreateAt = began
	created, err := e.Runtime.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.ID, Config: cfg, SandboxConfig: pod.Config,
	})
	c.CreateTook = time.Since(began)
	if err != nil {
		c.CreateErr = fmt.Errorf("CreateContainer %s in pod %s: %w", spec.Name, pod.Spec.Name, err)
		return c
	}
	c.ID = created.ContainerId
	began = time.Now()
	c.StartAt = began
	_, err = e.Runtime.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ID})
	c.StartTook = time.Since(began)
	if err != nil {
		c.StartErr = fmt.Errorf("StartContainer %s in pod %s: %w", spec.Name, pod.Spec.Name, err)
	}
	return c
}

// StopContainer stops a container with a grace period, as kubelet does when it kills one.
func (e *Env) StopContainer(t testing.TB, id string, grace time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	if _, err := e.Runtime.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: int64(grace.Seconds())}); err != nil {
		t.Fatalf("StopContainer %s: %v", id, err)
	}
}

// StopPod stops and removes a pod sandbox and its containers.
func (e *Env) StopPod(t testing.TB, pod *Pod) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	if _, err := e.Runtime.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		t.Fatalf("StopPodSandbox %s: %v", pod.Spec.Name, err)
	}
	if _, err := e.Runtime.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		t.Fatalf("RemovePodSandbox %s: %v", pod.Spec.Name, err)
	}
}

// Signal sends sig to a container's process (its PID 1) from the host, as a test's own event: the
// PID comes from containerd's verbose status.
func (e *Env) Signal(t testing.TB, id string, sig syscall.Signal) {
	t.Helper()
	pid, err := e.PID(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signal %s to container %s (pid %d): %v", sig, id, pid, err)
	}
}

// PID returns a container's process ID (a held container's runc init, which becomes its
// workload), from containerd's verbose status.
func (e *Env) PID(id string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	res, err := e.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		return 0, fmt.Errorf("ContainerStatus %s: %w", id, err)
	}
	var info struct{ Pid int }
	if err := json.Unmarshal([]byte(res.Info["info"]), &info); err != nil || info.Pid <= 0 {
		return 0, fmt.Errorf("container %s: no pid in its verbose status (%v)", id, err)
	}
	return info.Pid, nil
}

// ContainerStatus returns the CRI status of a container.
func (e *Env) ContainerStatus(t testing.TB, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), criTimeout)
	defer cancel()
	res, err := e.Runtime.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	return res.Status
}

// WaitExited waits until a container has exited and returns its exit code, reason and message.
func (e *Env) WaitExited(t testing.TB, id string, timeout time.Duration) (exitCode int32, reason, message string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// Subscribe first, then look: an exit between the two is in the stream. The server subscribes
	// only when the stream's handler runs, so a slow recheck closes that last window.
	events, err := e.Runtime.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatalf("GetContainerEvents: %v", err)
	}
	stopped := make(chan struct{}, 1)
	go func() {
		for {
			ev, err := events.Recv()
			if err != nil {
				return
			}
			if ev.ContainerId == id && ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
				stopped <- struct{}{}
				return
			}
		}
	}()
	recheck := time.NewTicker(250 * time.Millisecond)
	defer recheck.Stop()
	for {
		if st := e.ContainerStatus(t, id); st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st.ExitCode, st.Reason, st.Message
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container %s has not exited after %s", id, timeout)
		case <-stopped:
		case <-recheck.C:
		}
	}
}
