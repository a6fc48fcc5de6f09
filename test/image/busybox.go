package image

import (
	"fmt"
	"os/exec"
	"strings"
)

// BusyboxRef is the image examples/ run, `busybox:1.37` as containerd and kubelet name it.
const BusyboxRef = "docker.io/library/busybox:1.37"

// busyboxEnv is the published busybox image's environment.
var busyboxEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

// BuildBusybox writes dir/busybox_1.37.tar, an image that stands in for the published busybox:1.37
// since the tests reach no registry. busybox is a static busybox binary (Debian's busybox-static:
// hack/install-deps.sh extracts it into the cache); the image holds it as /bin/busybox with a
// symbolic link in /bin for each applet it lists, as `busybox --install -s /bin` makes them, and
// like the published image it has no entrypoint and runs `sh` by default.
func BuildBusybox(dir, busybox string) (tarPath string, err error) {
	applets, err := BusyboxApplets(busybox)
	if err != nil {
		return "", err
	}
	return Build(dir, BusyboxRef, BusyboxSpec(busybox, applets))
}

// BusyboxApplets returns the applets the busybox binary at path was built with (`busybox --list`).
func BusyboxApplets(path string) ([]string, error) {
	out, err := exec.Command(path, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list the applets of %s: %w", path, err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return nil, fmt.Errorf("list the applets of %s: it lists none", path)
	}
	return applets, nil
}

// BusyboxSpec is the busybox image of the binary at path with the given applets.
func BusyboxSpec(path string, applets []string) Spec {
	links := map[string]string{}
	for _, a := range applets {
		// Some builds list busybox itself; a name with a slash would leave /bin.
		if a != "busybox" && !strings.Contains(a, "/") {
			links["/bin/"+a] = "busybox"
		}
	}
	return Spec{
		Files:    map[string]string{"/bin/busybox": path},
		Symlinks: links,
		Cmd:      []string{"sh"},
		Env:      busyboxEnv,
	}
}
