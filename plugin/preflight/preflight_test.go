package preflight

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVersionsAreReadWithTheirSuffixesIgnored(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"v2.4.2", Version{2, 4, 2}, true},
		{"2.1", Version{2, 1, 0}, true},
		{"1.1.5+ds1", Version{1, 1, 5}, true},
		{"v2.0.0-rc.3", Version{2, 0, 0}, true},
		{"1.7.24~ds1", Version{1, 7, 24}, true},
		{"2.0.5-k3s1", Version{2, 0, 5}, true},
		{"", Version{}, false},
		{"2", Version{}, false},
		{"devel", Version{}, false},
		{"1.2.3.4", Version{}, false},
	} {
		got, ok := ParseVersion(tc.in)
		assert.Equal(t, tc.ok, ok, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestRuncBlocksBefore128AndFrom130To132(t *testing.T) {
	for v, blocks := range map[string]bool{
		"1.0.0": true, "1.1.5": true, "1.1.15": true, "1.2.0": true, "1.2.7": true,
		"1.2.8": false, "1.2.9": false,
		"1.3.0": true, "1.3.2": true, "1.3.3": false, "1.3.6": false,
		"1.4.0": false, "1.4.3": false, "1.5.2": false, "2.0.0": false,
	} {
		ver, ok := ParseVersion(v)
		require.True(t, ok)
		assert.Equal(t, blocks, RuncBlocks(ver), v)
	}
}

func TestEachSocketProblemSaysWhatToDo(t *testing.T) {
	const path = "/var/run/nri/nri.sock"
	for _, tc := range []struct {
		problem Problem
		want    []string
	}{
		{Missing, []string{"/var/run/nri/nri.sock does not exist: NRI is off", "daemonset/containerd-nri.toml", `disable = false`, "restart containerd", "--nri-socket", "keeps retrying"}},
		{Refused, []string{"nothing listens on", "containerd is not running, or runs with NRI off", "daemonset/containerd-nri.toml", "restart containerd"}},
		{Denied, []string{"permission denied", "as root"}},
		{NotSocket, []string{"is not a socket", "daemonset/containerd-nri.toml"}},
		{Other, []string{"cannot connect", "boom"}},
	} {
		v := JudgeSocket(Reachability{Path: path, Problem: tc.problem, Err: errors.New("boom")})
		assert.Equal(t, Fail, v.Result, tc.problem)
		assert.Equal(t, ReasonNRIUnreachable, v.Reason, tc.problem)
		for _, w := range tc.want {
			assert.Contains(t, v.Message, w, tc.problem)
		}
	}
	v := JudgeSocket(Reachability{Path: path})
	assert.Equal(t, Verdict{Check: NRISocket, Result: Pass, Summary: "NRI connected", Message: "connected to containerd's NRI socket " + path}, v)
}

func TestAFailedConnectionIsReportedAtOnceBeforeTheFirstConnectionAndAfterAGraceOnceConnected(t *testing.T) {
	grace := 30 * time.Second
	assert.True(t, Settled(false, 0, grace), "never connected: the runtime runs podorder, so NRI is off")
	assert.False(t, Settled(true, 5*time.Second, grace), "a containerd restart")
	assert.True(t, Settled(true, grace, grace))
}

func TestContainerdVersionsAreJudged(t *testing.T) {
	for _, tc := range []struct {
		runtime, version string
		result           Result
		summary, reason  string
		says             string
	}{
		{"containerd", "v2.4.2", Pass, "containerd 2.4.2", "", "fail-closed validator available"},
		{"containerd", "v2.2.0", Pass, "containerd 2.2.0", "", "fail-closed validator available"},
		{"containerd", "v2.1.4", Pass, "containerd 2.1.4", "", "lacks the fail-closed validator"},
		{"containerd", "2.0.0", Pass, "containerd 2.0.0", "", "lacks the fail-closed validator"},
		{"containerd", "1.7.27", Fail, "containerd 1.7.27", ReasonContainerdTooOld, "needs containerd >= 2.0"},
		{"containerd", "devel", Unknown, "containerd devel", "", "not understood"},
		{"cri-o", "1.33.0", Unknown, "cri-o 1.33.0", "", "tested on containerd only"},
	} {
		v := JudgeContainerd(tc.runtime, tc.version)
		name := tc.runtime + " " + tc.version
		assert.Equal(t, ContainerdVersion, v.Check, name)
		assert.Equal(t, tc.result, v.Result, name)
		assert.Equal(t, tc.summary, v.Summary, name)
		assert.Equal(t, tc.reason, v.Reason, name)
		assert.Contains(t, v.Message, tc.says, name)
	}
}

func TestRuntimeVersionsAreJudged(t *testing.T) {
	for _, tc := range []struct {
		fact    RuntimeFact
		result  Result
		summary string
		says    string
	}{
		{RuntimeFact{Binary: "/usr/bin/runc", Name: "runc", Version: "1.3.6"}, Pass, "runc 1.3.6", "returns from start"},
		{RuntimeFact{Binary: "/usr/bin/runc", Name: "runc", Version: "1.1.5+ds1"}, Fail, "runc 1.1.5", "Upgrade runc on this node to >= 1.2.8, >= 1.3.3 or 1.4+"},
		{RuntimeFact{Binary: "/usr/bin/runc", Name: "runc", Version: "1.3.1"}, Fail, "runc 1.3.1", "blocks kubelet's StartContainer"},
		{RuntimeFact{Binary: "/usr/bin/crun", Name: "crun", Version: "1.19"}, Pass, "crun 1.19.0", "not tested here"},
		{RuntimeFact{Binary: "/usr/bin/youki", Name: "youki", Version: "0.5.0"}, Unknown, "youki 0.5.0", "not runc or crun"},
		{RuntimeFact{Binary: "/usr/bin/runc", Name: "runc", Version: "unknown"}, Unknown, "runc unknown", "not understood"},
		{RuntimeFact{Err: ErrNoBinary}, Unknown, "runtime unknown", "at the first held container"},
		{RuntimeFact{Binary: "/host/runc", Err: errors.New("no such file")}, Unknown, "runtime unknown", "/host/runc: no such file"},
	} {
		v := JudgeRuntime(tc.fact)
		name := fmt.Sprint(tc.fact)
		assert.Equal(t, tc.result, v.Result, name)
		assert.Equal(t, tc.summary, v.Summary, name)
		assert.Contains(t, v.Message, tc.says, name)
		if tc.result == Fail {
			assert.Equal(t, ReasonRuntimeTooOld, v.Reason, name)
		}
	}
}

func TestWhatAHeldStartShowsOverridesAnUnknownRuntime(t *testing.T) {
	unknown := JudgeRuntime(RuntimeFact{Err: ErrNoBinary})
	v := JudgeRuntimeFinding(unknown, true, 2*time.Second, "pod default/web, container app")
	assert.Equal(t, Fail, v.Result)
	assert.Equal(t, ReasonRuntimeBlocks, v.Reason)
	assert.Equal(t, "runtime blocks start while held", v.Summary)
	assert.Contains(t, v.Message, "did not return within 2s")

	known := JudgeRuntime(RuntimeFact{Name: "runc", Version: "1.3.6"})
	v = JudgeRuntimeFinding(known, false, 2*time.Second, "pod default/web, container app")
	assert.Equal(t, Pass, v.Result)
	assert.Equal(t, "runc 1.3.6", v.Summary)
}

func TestTheNodeIsReadyWhenConnectedAndNothingFails(t *testing.T) {
	connected := JudgeSocket(Reachability{Path: "/s"})
	c := JudgeContainerd("containerd", "v2.4.2")
	runc := JudgeRuntime(RuntimeFact{Name: "runc", Version: "1.3.6"})
	msg, ok := Ready([]Verdict{connected, c, runc})
	assert.True(t, ok)
	assert.Equal(t, "podorder is ready on this node: NRI connected, containerd 2.4.2, runc 1.3.6", msg)

	_, ok = Ready([]Verdict{connected, c, Initial(RuntimeVersion)})
	assert.True(t, ok, "an unknown runtime is judged at the first hold")
	_, ok = Ready([]Verdict{Initial(NRISocket), c, runc})
	assert.False(t, ok, "not connected yet")
	_, ok = Ready([]Verdict{connected, c, JudgeRuntime(RuntimeFact{Name: "runc", Version: "1.1.5"})})
	assert.False(t, ok)
	assert.Equal(t, "node: NRI connected, containerd 2.4.2, runc 1.3.6", Header([]Verdict{connected, c, runc}))
}

func TestRuntimeVersionOutputIsRead(t *testing.T) {
	for out, want := range map[string][2]string{
		"runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1\nspec: 1.0.2-dev\n": {"runc", "1.1.5+ds1"},
		"crun version 1.8.1\ncommit: abc\n":                              {"crun", "1.8.1"},
		"usage: runc\n":                                                  {"", ""},
		"":                                                               {"", ""},
	} {
		name, version := ParseVersionOutput(out)
		assert.Equal(t, want, [2]string{name, version}, out)
	}
}

func TestGoBuildInformationGivesTheVersionWithoutRunningTheBinary(t *testing.T) {
	for _, tc := range []struct {
		module, version, ldflags string
		name, want               string
	}{
		{"github.com/opencontainers/runc", "v1.3.6", "", "runc", "1.3.6"},
		{"github.com/opencontainers/runc", "(devel)", "-X main.gitCommit=abc -X main.version=1.2.5", "runc", "1.2.5"},
		{"github.com/opencontainers/runc", "", "", "runc", ""},
	} {
		name, version := fromBuildInfo(tc.module, tc.version, tc.ldflags)
		assert.Equal(t, tc.name, name)
		assert.Equal(t, tc.want, version)
	}
}
