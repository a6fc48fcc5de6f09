package decl

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTheCommittedPoliciesAreGeneratedFromTheKeyTable(t *testing.T) {
	want := string(ValidationPolicy())
	for _, path := range []string{"../../daemonset/base/validation.yaml", "../../charts/podorder/files/validation.yaml"} {
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, want, string(got), "%s is not what the key table generates: run go generate ./plugin/decl", path)
	}
}

func TestThePolicyMatchesEachKindsSyntaxAsTheTableWritesIt(t *testing.T) {
	policy := string(ValidationPolicy())
	for _, k := range kinds {
		for _, p := range []string{k.labelSyntax, k.annotationSyntax} {
			if p != "" {
				assert.Contains(t, policy, `k.startsWith("`+Domain+k.name+`.")`, k.name)
				assert.Contains(t, policy, `.matches("`+celString(p)+`")`, k.name)
			}
		}
	}
}

// valueSamples are values of each kind: ones both the policy and the daemon accept, ones both refuse,
// and ones only the daemon refuses (a range, which a pattern does not check).
var valueSamples = map[string]struct{ valid, invalid, daemonOnly []string }{
	KindAfter + " label": {
		valid:   []string{"db", "db.cache_started.migrate_completed", "db_ready", strings.Repeat("a", 63)},
		invalid: []string{"", "db_up", "DB", "db..cache", "db,cache", "-db", "db_", ".db", strings.Repeat("a", 64)},
	},
	KindStopWith + " label": {
		valid:   []string{"main", "main.worker_failed", "a_exited.b_succeeded"},
		invalid: []string{"", "main_ready", "main:failed", "main.", "Main"},
	},
	KindTimeout + " label": {
		valid:      []string{"90s", "5m", "1h30m", "1.5h", "24h"},
		invalid:    []string{"", "5", "1d", "-1s", "5_m"},
		daemonOnly: []string{"0s", "25h"},
	},
	KindTimeout + " annotation": {
		valid:      []string{"90s", " 5m ", "100ms", "1µs"},
		invalid:    []string{"", "5 minutes", "-1s", "1d"},
		daemonOnly: []string{"0s", "24h1s"},
	},
	KindStopGrace + " annotation": {
		valid:      []string{"30s", "1s", " 2m "},
		invalid:    []string{"", "abc", "-1s"},
		daemonOnly: []string{"500ms", "0s", "25h"},
	},
	KindStopGrace + " label": {
		valid:      []string{"30s", "1m30s"},
		invalid:    []string{"", "30", "30_s"},
		daemonOnly: []string{"999ms", "25h"},
	},
	KindStopSignal + " label": {
		valid:   []string{"SIGINT", "term", "SigHup", "USR2"},
		invalid: []string{"", "SIGKILL", "9", "SIGSTOP", "SIG", "INTX"},
	},
	KindStopSignal + " annotation": {
		valid:   []string{" SIGQUIT ", "sigusr1"},
		invalid: []string{"", "SIGTERM SIGINT", "KILL"},
	},
	KindProbe + " annotation": {
		valid:      []string{"tcp:5432", "http:8080/healthz", " http:80 ", "http:80/a?b=c"},
		invalid:    []string{"", "udp:53", "tcp:80/x", "http:80/a b", "tcp:", "tcp:123456", "grpc:80"},
		daemonOnly: []string{"tcp:0", "tcp:70000"},
	},
	KindReadiness + " label": {
		valid:   []string{"kubelet", "podorder", "notify"},
		invalid: []string{"", "both", "Kubelet", "file", "file_ready", "Notify"},
	},
	KindReadiness + " annotation": {
		valid:      []string{"kubelet", " podorder ", "notify", "file:/run/ready", " file:/var/run/app.sock "},
		invalid:    []string{"", "both", "kubelet, podorder", "file:", "file:run/ready", "file: /run/ready", "file:/run/my ready"},
		daemonOnly: []string{"file:/run/../etc", "file:/run/", "file:/", "file:/a//b", "file:/" + strings.Repeat("a", MaxReadinessPath)},
	},
}

func TestThePolicyAndTheDaemonAgreeOnValues(t *testing.T) {
	for _, k := range kinds {
		for source, pattern := range map[string]string{"label": k.labelSyntax, "annotation": k.annotationSyntax} {
			samples, ok := valueSamples[k.name+" "+source]
			if pattern == "" {
				assert.False(t, ok, "%s %s has samples but no pattern", k.name, source)
				continue
			}
			re := regexp.MustCompile(pattern) // CEL's matches() is RE2, as Go's regexp
			daemonAccepts := func(v string) bool {
				kv := map[string]string{Domain + k.name + ".app": v}
				var err error
				if source == "label" {
					_, err = Parse(kv, nil).For("app")
				} else {
					_, err = Parse(nil, kv).For("app")
				}
				return err == nil
			}
			for _, v := range samples.valid {
				assert.True(t, re.MatchString(v), "the policy refuses %s %s=%q", source, k.name, v)
				assert.True(t, daemonAccepts(v), "the daemon refuses %s %s=%q", source, k.name, v)
			}
			for _, v := range samples.invalid {
				assert.False(t, re.MatchString(v), "the policy accepts %s %s=%q", source, k.name, v)
				assert.False(t, daemonAccepts(v), "the daemon accepts %s %s=%q", source, k.name, v)
			}
			for _, v := range samples.daemonOnly {
				assert.True(t, re.MatchString(v), "the policy refuses %s %s=%q", source, k.name, v)
				assert.False(t, daemonAccepts(v), "the daemon accepts %s %s=%q", source, k.name, v)
			}
		}
	}
}

func TestThePolicyAndTheDaemonAgreeOnKeys(t *testing.T) {
	re := regexp.MustCompile(keyPattern())
	for key, valid := range map[string]bool{
		"podorder.dev/after.app": true, "podorder.dev/stop-with.a-1": true, "podorder.dev/after." + strings.Repeat("a", 63): true,
		"podorder.dev/after": false, "podorder.dev/after.App": false, "podorder.dev/after.a.b": false, "podorder.dev/after.-a": false,
		"podorder.dev/after.": false, "podorder.dev/after." + strings.Repeat("a", 64): false,
	} {
		assert.Equal(t, valid, re.MatchString(key), "the policy on %s", key)
		_, refused := Parse(map[string]string{key: "db"}, nil).Errors()[""]
		assert.Equal(t, valid, !refused, "the daemon on %s", key)
	}
}
