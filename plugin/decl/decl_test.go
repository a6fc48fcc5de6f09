package decl

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/podorder/podorder/hooks/dependency"
)

func dep(c string, cond dependency.Condition) dependency.Dependency {
	return dependency.Dependency{Container: c, Condition: cond}
}

func TestParseReadsLabelAndAnnotationForms(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		container   string
		want        *Declared
	}{
		{
			name:      "label with suffixes, no suffix meaning ready",
			labels:    map[string]string{"podorder.dev/after.app": "db.cache_started.migrate_completed"},
			container: "app",
			want: &Declared{After: []dependency.Dependency{dep("cache", dependency.Started), dep("db", dependency.Ready),
				dep("migrate", dependency.Completed)}, Timeout: DefaultTimeout},
		},
		{
			name:        "annotation long form with spaces",
			annotations: map[string]string{"podorder.dev/after.app": " db , cache:started,migrate:completed"},
			container:   "app",
			want: &Declared{After: []dependency.Dependency{dep("cache", dependency.Started), dep("db", dependency.Ready),
				dep("migrate", dependency.Completed)}, Timeout: DefaultTimeout},
		},
		{
			name:        "label and annotation merge; the same dependency twice with one condition is fine",
			labels:      map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "90s"},
			annotations: map[string]string{"podorder.dev/after.app": "db:ready, cache:started"},
			container:   "app",
			want:        &Declared{After: []dependency.Dependency{dep("cache", dependency.Started), dep("db", dependency.Ready)}, Timeout: 90 * time.Second},
		},
		{
			name:        "a probe alone makes a container waited on but not held",
			annotations: map[string]string{"podorder.dev/probe.db": "http:8080/healthz"},
			container:   "db",
			want:        &Declared{Timeout: DefaultTimeout, Probe: &Probe{Kind: "http", Port: 8080, Path: "/healthz"}},
		},
		{
			name:      "readiness from kubelet opts out of podorder evaluating the readinessProbe",
			labels:    map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "kubelet"},
			container: "db",
			want:      &Declared{Timeout: DefaultTimeout, KubeletReadiness: true},
		},
		{
			name:        "readiness from podorder is the default, said out loud",
			annotations: map[string]string{"podorder.dev/readiness.db": " podorder "},
			container:   "db",
			want:        &Declared{Timeout: DefaultTimeout},
		},
		{
			name:      "readiness notify: the container's own READY=1 decides",
			labels:    map[string]string{"podorder.dev/after.app": "db", "podorder.dev/readiness.db": "notify"},
			container: "db",
			want:      &Declared{Timeout: DefaultTimeout, Signal: &Signal{Kind: ReadinessNotify}},
		},
		{
			name:        "readiness file: a path appearing in the container decides",
			annotations: map[string]string{"podorder.dev/readiness.db": " file:/run/db/ready.sock "},
			container:   "db",
			want:        &Declared{Timeout: DefaultTimeout, Signal: &Signal{Kind: ReadinessFile, Path: "/run/db/ready.sock"}},
		},
		{
			name:        "the same readiness as a label and an annotation is fine",
			labels:      map[string]string{"podorder.dev/readiness.db": "notify"},
			annotations: map[string]string{"podorder.dev/readiness.db": "notify"},
			container:   "db",
			want:        &Declared{Timeout: DefaultTimeout, Signal: &Signal{Kind: ReadinessNotify}},
		},
		{
			name:      "a container without keys has no hold",
			labels:    map[string]string{"podorder.dev/after.app": "db"},
			container: "db",
			want:      nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.labels, tt.annotations).For(tt.container)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseRejectsBadDeclarationsWithActionableMessages(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		container   string
		wantErr     []string
	}{
		{"unknown condition", map[string]string{"podorder.dev/after.app": "db_up"}, nil, "app",
			[]string{`label podorder.dev/after.app="db_up"`, `unknown condition "up"`, "started, ready, completed"}},
		{"bad container name", nil, map[string]string{"podorder.dev/after.app": "DB"}, "app",
			[]string{`"DB" is not a container name`}},
		{"empty list", nil, map[string]string{"podorder.dev/after.app": " "}, "app", []string{"empty dependency list"}},
		{"conflicting conditions", map[string]string{"podorder.dev/after.app": "db_started"},
			map[string]string{"podorder.dev/after.app": "db:completed"}, "app",
			[]string{"waits for db twice with different conditions", "started in the label", "completed in the annotation"}},
		{"bad timeout", nil, map[string]string{"podorder.dev/timeout.app": "5 minutes"}, "app",
			[]string{"positive Go duration"}},
		{"negative timeout", nil, map[string]string{"podorder.dev/timeout.app": "-1s"}, "app", []string{"positive Go duration"}},
		{"bad probe", nil, map[string]string{"podorder.dev/probe.db": "udp:53"}, "db", []string{"want tcp:<port> or http:<port>/<path>"}},
		{"probe port out of range", nil, map[string]string{"podorder.dev/probe.db": "tcp:70000"}, "db", []string{"port 1-65535"}},
		{"unknown kind", map[string]string{"podorder.dev/afterr.app": "db"}, nil, "app", []string{`unknown key kind "afterr"`, "readiness.app"}},
		{"unknown readiness source", map[string]string{"podorder.dev/readiness.db": "both"}, nil, "db",
			[]string{`label podorder.dev/readiness.db="both": want podorder`, "kubelet (wait for kubelet's verdict)", "notify", "file:<absolute path>"}},
		{"file readiness in a label", map[string]string{"podorder.dev/readiness.db": "file:ready"}, nil, "db",
			[]string{"only read from an annotation", "move it to the annotation podorder.dev/readiness.db"}},
		{"file readiness with a relative path", nil, map[string]string{"podorder.dev/readiness.db": "file:run/ready"}, "db",
			[]string{`path "run/ready" is not absolute`, "want file:<absolute path>"}},
		{"file readiness escaping with ..", nil, map[string]string{"podorder.dev/readiness.db": "file:/run/../../etc/shadow"}, "db",
			[]string{`path "/run/../../etc/shadow" is not clean`}},
		{"file readiness with a trailing slash", nil, map[string]string{"podorder.dev/readiness.db": "file:/run/"}, "db",
			[]string{`is not clean`}},
		{"file readiness of the root", nil, map[string]string{"podorder.dev/readiness.db": "file:/"}, "db",
			[]string{`path "/" is not absolute`}},
		{"file readiness with a space", nil, map[string]string{"podorder.dev/readiness.db": "file:/run/my ready"}, "db",
			[]string{`not printable ASCII`}},
		{"file readiness path too long", nil, map[string]string{"podorder.dev/readiness.db": "file:/" + strings.Repeat("a", MaxReadinessPath)}, "db",
			[]string{"more than the 512 podorder reads"}},
		{"label and annotation disagree on readiness", map[string]string{"podorder.dev/readiness.db": "notify"},
			map[string]string{"podorder.dev/readiness.db": "kubelet"}, "db",
			[]string{`annotation podorder.dev/readiness.db="kubelet": conflicts with the other readiness "notify" for db: keep one`}},
		{"self dependency", map[string]string{"podorder.dev/after.app": "app"}, nil, "app", []string{"container app waits for itself"}},
		{"two-cycle names the cycle", map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "a"}, nil, "b",
			[]string{"dependency cycle a → b → a", "remove one of these dependencies"}},
		{"three-cycle rejects every member", map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "c", "podorder.dev/after.c": "a_completed"}, nil, "c",
			[]string{"dependency cycle a → b → c → a"}},
		{"unbalanced pod selector", nil, map[string]string{"podorder.dev/after.app": "pod(app=mysql"}, "app",
			[]string{"unbalanced '('"}},
		{"selector without a value", nil, map[string]string{"podorder.dev/after.app": "pod(app):ready"}, "app",
			[]string{`selector term "app": want <label>=<value>`}},
		{"pod dependency with a bad condition", nil, map[string]string{"podorder.dev/after.app": "pod(app=x):up"}, "app",
			[]string{`unknown condition "up"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.labels, tt.annotations).For(tt.container)
			require.Error(t, err)
			for _, w := range tt.wantErr {
				assert.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestCycleLeavesContainersOffTheCycleValid(t *testing.T) {
	p := Parse(map[string]string{"podorder.dev/after.a": "b", "podorder.dev/after.b": "a", "podorder.dev/after.c": "a"}, nil)
	_, err := p.For("c")
	assert.NoError(t, err, "c waits on the cycle but is not on it; its hold times out with a message instead")
	assert.Len(t, p.Errors(), 2)
}

func TestCheckNamesRejectsDependenciesNotInThePod(t *testing.T) {
	p := Parse(map[string]string{"podorder.dev/after.app": "dbx.cache", "podorder.dev/after.web": "app"}, nil)
	p.CheckNames([]string{"db", "cache", "app", "web"})
	_, err := p.For("app")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "container app waits for dbx, which is not in the pod; containers are: db, cache, app, web")
	_, err = p.For("web")
	assert.NoError(t, err, "a container whose own declaration is fine is not blamed")
}

func TestCheckNamesRejectsTheWholePodWhenAKeyNamesNoContainer(t *testing.T) {
	// A typo in the key would otherwise be ignored and the container it meant would start unordered.
	p := Parse(map[string]string{"podorder.dev/after.ap": "db"}, nil)
	p.CheckNames([]string{"db", "app"})
	for _, c := range []string{"app", "db"} {
		_, err := p.For(c)
		require.Error(t, err, c)
		assert.Contains(t, err.Error(), "keys name container ap, which is not in the pod; containers are: db, app")
	}
}

func TestParseEnforcesTheDeclarationLimits(t *testing.T) {
	many := func(n int, f func(i int) string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = f(i)
		}
		return strings.Join(items, ", ")
	}
	manyKeys := map[string]string{}
	for i := 0; i <= MaxKeys; i++ {
		manyKeys[fmt.Sprintf("podorder.dev/timeout.c%d", i)] = "1m"
	}
	manyProbes := map[string]string{"podorder.dev/after.app": "c0"}
	for i := 0; i <= MaxProbes; i++ {
		manyProbes[fmt.Sprintf("podorder.dev/probe.c%d", i)] = "tcp:80"
	}
	manySignals := map[string]string{"podorder.dev/after.app": "c0"}
	for i := 0; i <= MaxSignals; i++ {
		manySignals[fmt.Sprintf("podorder.dev/readiness.c%d", i)] = "notify"
	}
	tests := []struct {
		name        string
		annotations map[string]string
		container   string
		wantErr     string
	}{
		{"more readiness signals than the pod limit", manySignals, "c3",
			fmt.Sprintf("the pod declares %d podorder.dev/readiness keys of notify or file:<path>, more than the %d", MaxSignals+1, MaxSignals)},
		{"a value over the byte limit is refused before it is parsed",
			map[string]string{"podorder.dev/after.app": strings.Repeat("pod(a=b),", 30000)}, "app",
			fmt.Sprintf("the value has 270000 bytes, more than the %d podorder reads", MaxValueBytes)},
		{"more keys than the pod limit fail every container",
			manyKeys, "c3", fmt.Sprintf("the pod has %d podorder.dev/ labels and annotations, more than the %d", MaxKeys+1, MaxKeys)},
		{"more dependencies than the container limit",
			map[string]string{"podorder.dev/after.app": many(MaxDependencies+1, func(i int) string { return fmt.Sprintf("c%d", i) })}, "app",
			fmt.Sprintf("container app waits for %d dependencies, more than the %d", MaxDependencies+1, MaxDependencies)},
		{"more pod dependencies than the pod limit, summed over containers",
			map[string]string{
				"podorder.dev/after.app": many(MaxPodDependencies, func(i int) string { return fmt.Sprintf("pod(app=v%d)", i) }),
				"podorder.dev/after.web": "pod(app=other)",
			}, "web", fmt.Sprintf("the pod declares %d distinct pod(...) dependencies, more than the %d podorder allows per pod", MaxPodDependencies+1, MaxPodDependencies)},
		{"more selector label keys than the pod limit, summed over its selectors",
			map[string]string{
				"podorder.dev/after.app": "pod(k0=v,k1=v,k2=v,k3=v),pod(k4=v,k5=v)",
				"podorder.dev/after.web": "pod(k6=v,k7=v,k0=w),pod(k8=v)",
			}, "web", fmt.Sprintf("the pod's pod(...) selectors use %d distinct label keys, more than the %d podorder allows per pod", MaxPodSelectorKeys+1, MaxPodSelectorKeys)},
		{"more probes than the pod limit", manyProbes, "c1", fmt.Sprintf("the pod declares %d podorder.dev/probe keys, more than the %d", MaxProbes+1, MaxProbes)},
		{"a timeout over the cap", map[string]string{"podorder.dev/after.app": "db", "podorder.dev/timeout.app": "2562047h47m16s"}, "app",
			"timeout must be a positive Go duration of at most 24h0m0s"},
		{"control characters in an HTTP probe path", map[string]string{"podorder.dev/probe.db": "http:80/a\x01b"}, "db", "the path printable ASCII"},
		{"a space in an HTTP probe path", map[string]string{"podorder.dev/probe.db": "http:80/a b"}, "db", "the path printable ASCII"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(nil, tt.annotations).For(tt.container)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Less(t, len(err.Error()), 2048, "messages quote values cut short")
		})
	}
}

func TestParseAcceptsDeclarationsAtTheLimits(t *testing.T) {
	deps := make([]string, MaxDependencies)
	for i := range deps {
		if i < MaxPodDependencies {
			deps[i] = fmt.Sprintf("pod(app=v%d)", i)
		} else {
			deps[i] = fmt.Sprintf("c%d", i)
		}
	}
	h, err := Parse(nil, map[string]string{"podorder.dev/after.app": strings.Join(deps, ","), "podorder.dev/timeout.app": "24h"}).For("app")
	require.NoError(t, err)
	assert.Len(t, h.After, MaxDependencies)
	assert.Len(t, h.Pods, MaxPodDependencies)
	assert.Equal(t, MaxTimeout, h.Timeout)
}

func TestPodDependencyNamesDoNotCollide(t *testing.T) {
	// These two selectors had the same 32-bit FNV name: one of them was silently dropped.
	h, err := Parse(nil, map[string]string{"podorder.dev/after.app": "pod(app=v862969), pod(app=v1060126)"}).For("app")
	require.NoError(t, err)
	require.Len(t, h.Pods, 2)
	assert.NotEqual(t, h.Pods[0].Name, h.Pods[1].Name)
	assert.Len(t, h.After, 2)
}

func TestQuoteCutsLongValues(t *testing.T) {
	assert.Equal(t, `"db"`, Quote("db"))
	q := Quote(strings.Repeat("é", 1000))
	assert.Contains(t, q, "… (2000 bytes)")
	assert.Less(t, len(q), 200)
}

func TestUsesIsFalseForPodsWithoutPodorderKeys(t *testing.T) {
	assert.False(t, Uses(map[string]string{"app": "x"}, map[string]string{"other.dev/after.app": "db"}))
	assert.True(t, Uses(nil, map[string]string{"podorder.dev/probe.db": "tcp:1"}))
}

func TestContainersFromLastApplied(t *testing.T) {
	cs, ok := ContainersFromLastApplied(map[string]string{LastAppliedAnnotation: `{"apiVersion":"v1","kind":"Pod","spec":{"initContainers":[{"name":"init"},` +
		`{"name":"proxy","restartPolicy":"Always","startupProbe":{"tcpSocket":{"port":1}}},{"name":"log","restartPolicy":"Always"}],"containers":[{"name":"app"},{"name":"db"}]}}`})
	require.True(t, ok)
	assert.Equal(t, []Container{{Name: "init", Role: Init}, {Name: "proxy", Role: Sidecar, StartupProbe: true, Restarts: true}, {Name: "log", Role: Sidecar, Restarts: true},
		{Name: "app", Restarts: true}, {Name: "db", Restarts: true}}, cs)
	for _, raw := range []string{`{"kind":"Deployment","spec":{}}`, `not json`} {
		_, ok := ContainersFromLastApplied(map[string]string{LastAppliedAnnotation: raw})
		assert.False(t, ok, raw)
	}
}

// FuzzParse checks that no declaration panics the parser, that every accepted dependency is a valid
// name with a known condition, and that no accepted hold is on a cycle.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"db", "db.cache_started.migrate_completed", "db_up", "a.b", "", "..", "_ready", "db, cache:started", "pod(app=x):ready", "app"} {
		f.Add(s, s, "5m", "tcp:5432")
	}
	f.Fuzz(func(t *testing.T, label, annotation, timeout, probe string) {
		p := Parse(map[string]string{"podorder.dev/after.app": label, "podorder.dev/timeout.app": timeout},
			map[string]string{"podorder.dev/after.db": annotation, "podorder.dev/probe.db": probe})
		for name, h := range p.Declared {
			if _, err := p.For(name); err != nil {
				continue
			}
			require.Positive(t, h.Timeout)
			require.LessOrEqual(t, h.Timeout, MaxTimeout)
			require.LessOrEqual(t, len(h.After), MaxDependencies)
			onPods := map[string]bool{}
			for _, pd := range h.Pods {
				onPods[pd.Name] = true
			}
			for _, d := range h.After {
				require.True(t, validContainerName(d.Container) || onPods[d.Container], d.Container)
				_, err := dependency.Parse(string(d.Condition))
				require.NoError(t, err)
				require.NotEqual(t, name, d.Container)
			}
		}
		hApp, errApp := p.For("app")
		hDB, errDB := p.For("db")
		if errApp == nil && errDB == nil && hApp != nil && hDB != nil {
			require.False(t, waits(hApp, "db") && waits(hDB, "app"), "a two-container cycle was accepted")
		}
	})
}

func waits(h *Declared, c string) bool {
	for _, d := range h.After {
		if d.Container == c {
			return true
		}
	}
	return false
}

func TestParseReadsCrossPodDependencies(t *testing.T) {
	p := Parse(nil, map[string]string{"podorder.dev/after.app": "db, pod(tier=broker, app=kafka):started, pod(other/app=mysql)"})
	h, err := p.For("app")
	require.NoError(t, err)
	require.Len(t, h.Pods, 2)
	var kafka, mysql PodDependency
	for _, pd := range h.Pods {
		if pd.Namespace == "other" {
			mysql = pd
		} else {
			kafka = pd
		}
	}
	assert.Equal(t, "app=kafka,tier=broker", kafka.Selector, "terms are sorted: one selector, one name")
	assert.Equal(t, dependency.Started, kafka.Condition)
	assert.Equal(t, "pod(other/app=mysql):ready", mysql.String())
	assert.Regexp(t, `^pod\.[0-9a-f]{32}$`, kafka.Name, "a dot: never a container name")
	assert.Len(t, h.After, 3, "pod dependencies are waited on under their synthetic names")
	assert.Contains(t, h.After, dependency.Dependency{Container: kafka.Name, Condition: dependency.Started})

	p.CheckNames([]string{"app", "db"})
	_, err = p.For("app")
	assert.NoError(t, err, "synthetic names are not container names")
}
