// Command noopnri is an NRI plugin that subscribes to the events podorder subscribes to and does
// nothing with them: the third variant of the zero-cost measurement, which tells the cost of NRI
// itself (containerd's calls to a plugin over its socket) from podorder's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type noop struct{}

func (noop) Configure(context.Context, string, string, string) (api.EventMask, error) { return 0, nil }

func (noop) Synchronize(context.Context, []*api.PodSandbox, []*api.Container) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

func (noop) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	return nil, nil, nil
}

func (noop) StartContainer(context.Context, *api.PodSandbox, *api.Container) error { return nil }

func (noop) PostStartContainer(context.Context, *api.PodSandbox, *api.Container) error { return nil }

func (noop) StopContainer(context.Context, *api.PodSandbox, *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

func (noop) RemoveContainer(context.Context, *api.PodSandbox, *api.Container) error { return nil }

func (noop) RemovePodSandbox(context.Context, *api.PodSandbox) error { return nil }

func main() {
	socket := flag.String("nri-socket", "/var/run/nri/nri.sock", "containerd's NRI socket")
	flag.Parse()
	s, err := stub.New(noop{}, stub.WithPluginName("noop"), stub.WithPluginIdx("20"), stub.WithSocketPath(*socket))
	if err == nil {
		err = s.Run(context.Background())
	}
	fmt.Fprintf(os.Stderr, "noopnri: %v\n", err)
	os.Exit(1)
}
