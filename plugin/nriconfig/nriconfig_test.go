package nriconfig

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A config as a node's containerd 2.x has one: comments, other plugins' sections around NRI's.
const offConfig = `# containerd config, written by the distribution
version = 3
root = "/var/lib/containerd"

[plugins."io.containerd.cri.v1.runtime"]
  enable_selinux = false # keep

[plugins."io.containerd.nri.v1.nri"]
  # NRI stays off until the operator wants it.
  disable = true   # off on this distribution
  socket_path = "/var/run/nri/nri.sock"
  plugin_request_timeout = "2s"

[plugins."io.containerd.nri.v1.nri".default_validator]
  enable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
`

func TestEnableTurnsOnlyNRIsSwitchesAndKeepsTheRestByteForByte(t *testing.T) {
	for name, tc := range map[string]struct {
		in, want string
		edits    []Edit
	}{
		"disable = true in NRI's section, with comments around": {
			in:    offConfig,
			want:  strings.Replace(offConfig, "disable = true   #", "disable = false   #", 1),
			edits: []Edit{{Key: "disable", Line: 10, Before: "  disable = true   # off on this distribution", After: "  disable = false   # off on this distribution"}},
		},
		"both switches on, disable_connections first in the file": {
			in:   "version = 2\n[plugins.\"io.containerd.nri.v1.nri\"]\ndisable_connections=true\ndisable = true\n",
			want: "version = 2\n[plugins.\"io.containerd.nri.v1.nri\"]\ndisable_connections=false\ndisable = false\n",
			edits: []Edit{
				{Key: "disable_connections", Line: 3, Before: "disable_connections=true", After: "disable_connections=false"},
				{Key: "disable", Line: 4, Before: "disable = true", After: "disable = false"},
			},
		},
		"a dotted key at the top": {
			in:    "version = 3\nplugins.\"io.containerd.nri.v1.nri\".disable = true\n",
			want:  "version = 3\nplugins.\"io.containerd.nri.v1.nri\".disable = false\n",
			edits: []Edit{{Key: "disable", Line: 2, Before: `plugins."io.containerd.nri.v1.nri".disable = true`, After: `plugins."io.containerd.nri.v1.nri".disable = false`}},
		},
		"an inline table under [plugins]": {
			in:    "version = 3\n[plugins]\n  'io.containerd.nri.v1.nri' = { disable = true, socket_path = \"/var/run/nri/nri.sock\" }\n",
			want:  "version = 3\n[plugins]\n  'io.containerd.nri.v1.nri' = { disable = false, socket_path = \"/var/run/nri/nri.sock\" }\n",
			edits: []Edit{{Key: "disable", Line: 3, Before: `  'io.containerd.nri.v1.nri' = { disable = true, socket_path = "/var/run/nri/nri.sock" }`, After: `  'io.containerd.nri.v1.nri' = { disable = false, socket_path = "/var/run/nri/nri.sock" }`}},
		},
		"Windows line ends": {
			in:    "version = 3\r\n[plugins.\"io.containerd.nri.v1.nri\"]\r\n  disable = true\r\n",
			want:  "version = 3\r\n[plugins.\"io.containerd.nri.v1.nri\"]\r\n  disable = false\r\n",
			edits: []Edit{{Key: "disable", Line: 3, Before: "  disable = true", After: "  disable = false"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Enable([]byte(tc.in))
			require.NoError(t, err)
			assert.True(t, res.Changed())
			assert.Equal(t, tc.want, string(res.Content))
			assert.Equal(t, tc.edits, res.Edits)
			assert.Empty(t, res.Notes)
		})
	}
}

func TestEnableLeavesAFileWithNRIOnAsItIs(t *testing.T) {
	for name, tc := range map[string]struct{ in, state string }{
		"disable = false":                   {strings.Replace(offConfig, "disable = true", "disable = false", 1), "sets neither disable nor disable_connections to true"},
		"no NRI section: the defaults":      {"version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n", "no [plugins.\"io.containerd.nri.v1.nri\"] section"},
		"only a validator subsection":       {"version = 3\n[plugins.\"io.containerd.nri.v1.nri\".default_validator]\n  enable = true\n", "sets neither"},
		"an empty file":                     {"", "sets nothing"},
		"comments only":                     {"# all defaults\n\n", "sets nothing"},
		"a section written inside a string": {"version = 3\nnote = '''\n[plugins.\"io.containerd.nri.v1.nri\"]\ndisable = true\n'''\n", "no [plugins."},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Enable([]byte(tc.in))
			require.NoError(t, err)
			assert.False(t, res.Changed())
			assert.Equal(t, tc.in, string(res.Content))
			assert.Contains(t, res.State, tc.state)
		})
	}
}

func TestEnableNotesWhatItLeavesToTheOperator(t *testing.T) {
	res, err := Enable([]byte("version = 3\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n  socket_path = \"/run/nri/other.sock\"\n"))
	require.NoError(t, err)
	assert.True(t, res.Changed())
	require.Len(t, res.Notes, 2)
	assert.Contains(t, res.Notes[0], "imports [/etc/containerd/conf.d/*.toml]: podorder read and patched only this file")
	assert.Contains(t, res.Notes[1], "socket_path is /run/nri/other.sock, not podorder's /var/run/nri/nri.sock: left as it is")
	assert.Contains(t, res.Notes[1], "--nri-socket=/run/nri/other.sock")
	assert.Contains(t, string(res.Content), `socket_path = "/run/nri/other.sock"`, "the socket stays where it is")
}

func TestEnableRefusesWhatItCannotEditSafely(t *testing.T) {
	for name, tc := range map[string]struct{ in, why string }{
		"a version 1 config":            {"version = 1\n[plugins.nri]\n  disable = true\n", "version 1 config, containerd 1.x's format"},
		"no version line":               {"[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n", "no version line, so containerd reads it as version 1"},
		"a version from the future":     {"version = 5\n", "version 5 config; podorder knows versions 2 to 4"},
		"a version that is no number":   {"version = \"3\"\n", "its version is 3, not a number"},
		"not TOML":                      {"version = 3\n[plugins\n", "does not parse as TOML"},
		"a key set twice":               {"version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\ndisable = true\ndisable = true\n", "does not parse as TOML"},
		"NRI in disabled_plugins":       {"version = 3\ndisabled_plugins = [\"io.containerd.nri.v1.nri\"]\n", `disabled_plugins lists "io.containerd.nri.v1.nri"`},
		"disable as a string":           {"version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\ndisable = \"true\"\n", "NRI's disable is true, not true or false"},
		"NRI as an array of tables":     {"version = 3\n[[plugins.\"io.containerd.nri.v1.nri\"]]\ndisable = true\n", "is not a table (an array of tables?)"},
		"plugins as a value, not table": {"version = 3\nplugins = 1\n", "its plugins key is not a table"},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := Enable([]byte(tc.in))
			require.ErrorIs(t, err, ErrRefused)
			assert.Contains(t, err.Error(), tc.why)
			assert.Nil(t, res.Content, "nothing to write")
		})
	}
}
