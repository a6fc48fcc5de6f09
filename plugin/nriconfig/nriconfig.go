// Package nriconfig turns NRI on in containerd's config file, as `podorder enable-nri` and the
// chart's opt-in init container do. It edits the file as text, within the NRI plugin's own keys:
// comments, order, spacing and every other section stay byte for byte. It reads the file with
// go-toml, the parser containerd itself uses, to know what containerd will see; it edits only the
// `true` of `disable` and `disable_connections`, and checks, by parsing the result again, that
// nothing else changed. Anything it does not understand it refuses, naming the fix by hand.
//
// Enable is pure; Read and Write touch the file; Unit restarts containerd through systemd.
package nriconfig

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// PluginID is the NRI plugin's ID in containerd's config, version 2 to 4 alike:
// [plugins."io.containerd.nri.v1.nri"].
const PluginID = "io.containerd.nri.v1.nri"

// DefaultSocket is the NRI socket containerd serves unless socket_path says otherwise, and the one
// podorder's daemon and DaemonSet use.
const DefaultSocket = "/var/run/nri/nri.sock"

// The config versions containerd 2.x reads without migrating from 1.x's format.
const (
	minVersion = 2
	maxVersion = 4 // containerd 2.4
)

// switches are the NRI keys that turn it off when true, in the order Enable reports them: disable
// turns the whole plugin off, disable_connections refuses external plugins such as podorder.
var switches = []string{"disable", "disable_connections"}

// ErrRefused marks a file Enable will not edit; the error's text says why and what to do.
var ErrRefused = errors.New("refused")

// refuse is a refusal whose message is format.
func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// Edit is one line Enable changed.
type Edit struct {
	// Key is the NRI key it turned off: disable or disable_connections.
	Key string
	// Line is the line's number, from 1.
	Line int
	// Before and After are the whole line, without its newline.
	Before, After string
}

// Result is what Enable found and did.
type Result struct {
	// Content is the file as it must be: the input itself when nothing changed.
	Content []byte
	// Edits are the changed lines; none when NRI was on already.
	Edits []Edit
	// State says how NRI stood before, in words.
	State string
	// Notes are what the caller must know and Enable did not change: imports it did not read, an
	// NRI socket elsewhere than DefaultSocket.
	Notes []string
}

// Changed says whether the file must be written.
func (r Result) Changed() bool { return len(r.Edits) > 0 }

// Enable returns content, containerd's config file, with NRI turned on: `disable = true` and
// `disable_connections = true` in [plugins."io.containerd.nri.v1.nri"] become false, and nothing
// else changes. A file without that section is left alone: containerd 2.x's defaults have NRI on,
// at DefaultSocket. A socket_path that names another socket is left alone too (other NRI plugins
// may use it), with a note. It refuses (ErrRefused) a file that does not parse, a config version
// other than 2 to 4 (version 1, or none, is containerd 1.x's format), NRI in disabled_plugins, and
// NRI settings in a shape it does not edit.
func Enable(content []byte) (Result, error) {
	var doc map[string]any
	if err := toml.Unmarshal(content, &doc); err != nil {
		return Result{}, refuse("it does not parse as TOML (%v); podorder edits only a file containerd can read: fix it by hand", err)
	}
	if len(doc) == 0 {
		return Result{Content: content, State: "NRI is on: the file sets nothing, so containerd 2.x's defaults apply"}, nil
	}
	if err := checkVersion(doc["version"]); err != nil {
		return Result{}, err
	}
	if disabled, ok := doc["disabled_plugins"].([]any); ok && slices.Contains(disabled, any(PluginID)) {
		return Result{}, refuse("disabled_plugins lists %q: remove it from that list by hand (podorder does not rewrite lists)", PluginID)
	}
	var notes []string
	if imports, ok := doc["imports"].([]any); ok && len(imports) > 0 {
		notes = append(notes, fmt.Sprintf("the file imports %v: podorder read and patched only this file; containerd merges the imported files over it, so check that none sets NRI's disable = true", imports))
	}

	nri, found, err := nriTable(doc)
	if err != nil {
		return Result{}, err
	}
	if !found {
		return Result{Content: content, Notes: notes,
			State: `NRI is on: the file has no [plugins."` + PluginID + `"] section, so containerd 2.x's defaults apply (NRI on, socket ` + DefaultSocket + ")"}, nil
	}
	var off []string
	for _, key := range switches {
		v, set := nri[key]
		if !set {
			continue
		}
		b, ok := v.(bool)
		if !ok {
			return Result{}, refuse("NRI's %s is %v, not true or false: fix it by hand", key, v)
		}
		if b {
			off = append(off, key)
		}
	}
	if socket, ok := nri["socket_path"].(string); ok && socket != "" && socket != DefaultSocket {
		notes = append(notes, fmt.Sprintf("NRI's socket_path is %s, not podorder's %s: left as it is (other NRI plugins may use it); give podorder's daemon --nri-socket=%s and mount that directory (the chart's paths.nriSocketDir and paths.nriSocket)", socket, DefaultSocket, socket))
	}
	if len(off) == 0 {
		return Result{Content: content, Notes: notes, State: "NRI is on: its section sets neither disable nor disable_connections to true"}, nil
	}

	located, err := locate(content, off)
	if err != nil {
		return Result{}, err
	}
	// In the file's order, so that the edits apply from the end with earlier offsets still valid.
	slices.SortFunc(off, func(a, b string) int { return int(located[a].Offset) - int(located[b].Offset) })
	out := slices.Clone(content)
	for _, key := range slices.Backward(off) {
		r := located[key]
		out = slices.Concat(out[:r.Offset], []byte("false"), out[r.Offset+r.Length:])
	}
	if err := verify(doc, out, off); err != nil {
		return Result{}, err
	}
	res := Result{Content: out, Notes: notes, State: "NRI is off: " + strings.Join(off, " and ") + " = true"}
	for i, key := range off {
		at := int(located[key].Offset)
		line, start, end := lineAt(content, at)
		_, outStart, outEnd := lineAt(out, at+i) // each earlier edit made the file a byte longer
		res.Edits = append(res.Edits, Edit{Key: key, Line: line,
			Before: strings.TrimSuffix(string(content[start:end]), "\r"), After: strings.TrimSuffix(string(out[outStart:outEnd]), "\r")})
	}
	return res, nil
}

// checkVersion refuses the config versions Enable does not edit.
func checkVersion(v any) error {
	const fix = "podorder needs containerd 2.x: upgrade containerd, then convert the file with `containerd config migrate`"
	if v == nil {
		return refuse("the file has no version line, so containerd reads it as version 1, containerd 1.x's format; %s", fix)
	}
	n, ok := v.(int64)
	switch {
	case !ok:
		return refuse("its version is %v, not a number: fix it by hand", v)
	case n < minVersion:
		return refuse("it is a version %d config, containerd 1.x's format; %s", n, fix)
	case n > maxVersion:
		return refuse("it is a version %d config; podorder knows versions %d to %d (containerd 2.0 to 2.4): set NRI's disable = false by hand", n, minVersion, maxVersion)
	}
	return nil
}

// nriTable finds the NRI plugin's table in the decoded file.
func nriTable(doc map[string]any) (map[string]any, bool, error) {
	p, ok := doc["plugins"]
	if !ok {
		return nil, false, nil
	}
	plugins, ok := p.(map[string]any)
	if !ok {
		return nil, false, refuse("its plugins key is not a table: fix it by hand")
	}
	n, ok := plugins[PluginID]
	if !ok {
		return nil, false, nil
	}
	nri, ok := n.(map[string]any)
	if !ok {
		return nil, false, refuse(`plugins."%s" is not a table (an array of tables?): fix it by hand`, PluginID)
	}
	return nri, true, nil
}

// locate finds where the file sets each of keys to true within the NRI table: in its
// [plugins."io.containerd.nri.v1.nri"] section, as a dotted key or in an inline table alike.
func locate(content []byte, keys []string) (map[string]unstable.Range, error) {
	found := map[string]unstable.Range{}
	record := func(path []string, value *unstable.Node) error {
		if len(path) != 3 || path[0] != "plugins" || path[1] != PluginID || !slices.Contains(keys, path[2]) {
			return nil
		}
		if value.Kind != unstable.Bool {
			return refuse("NRI's %s is not a plain true or false: set it to false by hand", path[2])
		}
		if _, twice := found[path[2]]; twice {
			return refuse("NRI's %s is set twice: fix it by hand", path[2])
		}
		found[path[2]] = value.Raw
		return nil
	}
	var walk func(prefix []string, kv *unstable.Node) error
	walk = func(prefix []string, kv *unstable.Node) error {
		path := slices.Concat(prefix, keyOf(kv))
		value := kv.Value()
		if value.Kind == unstable.InlineTable {
			for it := value.Children(); it.Next(); {
				if err := walk(path, it.Node()); err != nil {
					return err
				}
			}
			return nil
		}
		return record(path, value)
	}

	var p unstable.Parser
	p.Reset(content)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyOf(e)
		case unstable.KeyValue:
			if err := walk(table, e); err != nil {
				return nil, err
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, refuse("it does not parse as TOML (%v): fix it by hand", err)
	}
	for _, key := range keys {
		r, ok := found[key]
		if !ok || string(content[r.Offset:r.Offset+r.Length]) != "true" {
			return nil, refuse("NRI's %s = true is set in a shape podorder does not edit: set it to false by hand", key)
		}
	}
	return found, nil
}

// keyOf is the dotted key of a table header or key/value, one element per part, unquoted.
func keyOf(n *unstable.Node) []string {
	var parts []string
	for it := n.Key(); it.Next(); {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// verify checks that out decodes to doc with exactly the NRI keys off turned false, so that a
// mistake in the textual edit is never written.
func verify(doc map[string]any, out []byte, off []string) error {
	var got map[string]any
	if err := toml.Unmarshal(out, &got); err != nil {
		return fmt.Errorf("podorder's edit of the file does not parse (%v): nothing written; report this as a bug", err)
	}
	want := maps.Clone(doc)
	plugins := maps.Clone(doc["plugins"].(map[string]any))
	nri := maps.Clone(plugins[PluginID].(map[string]any))
	for _, key := range off {
		nri[key] = false
	}
	plugins[PluginID] = nri
	want["plugins"] = plugins
	if !reflect.DeepEqual(want, got) {
		return errors.New("podorder's edit of the file changed more than NRI's switches: nothing written; report this as a bug")
	}
	return nil
}

// lineAt returns the number (from 1) of the line holding offset, and where that line starts and
// ends (before its newline).
func lineAt(content []byte, offset int) (line, start, end int) {
	line = 1 + strings.Count(string(content[:offset]), "\n")
	start = strings.LastIndexByte(string(content[:offset]), '\n') + 1
	end = len(content)
	if i := strings.IndexByte(string(content[offset:]), '\n'); i >= 0 {
		end = offset + i
	}
	return line, start, end
}
