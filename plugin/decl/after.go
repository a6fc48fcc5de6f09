package decl

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/podorder/podorder/hooks/dependency"
)

// readAfter reads podorder.dev/after.<c>, in its label or its annotation form. A container may
// declare both: they are merged, and a dependency they give different conditions fails it.
func (r *reader) readAfter(k key) error {
	var list []dependency.Dependency
	var pods []PodDependency
	var err error
	if k.source == "label" {
		list, err = parseLabelAfter(k.value)
	} else {
		list, pods, err = parseAnnotationAfter(k.value)
	}
	if err != nil {
		return err
	}
	c := k.container
	if r.deps[c] == nil {
		r.deps[c] = map[string]declared{}
	}
	for _, d := range list {
		if prev, dup := r.deps[c][d.Container]; dup && prev.cond != d.Condition {
			r.pod.fail(c, fmt.Errorf("container %s waits for %s twice with different conditions (%s in the %s, %s in the %s): keep one",
				c, d.Container, prev.cond, prev.source, d.Condition, k.source))
			continue
		}
		r.deps[c][d.Container] = declared{d.Condition, k.source}
	}
	for _, pd := range pods {
		if r.podDeps[c] == nil {
			r.podDeps[c] = map[string]PodDependency{}
		}
		r.podDeps[c][pd.Name] = pd
		r.deps[c][pd.Name] = declared{pd.Condition, k.source}
	}
	r.pod.hold(c)
	return nil
}

// settleAfter writes each container's merged dependencies into its Declared, sorted.
func (r *reader) settleAfter() {
	for c, m := range r.deps {
		h := r.pod.hold(c)
		for name, s := range m {
			h.After = append(h.After, dependency.Dependency{Container: name, Condition: s.cond})
		}
		sort.Slice(h.After, func(i, j int) bool { return h.After[i].Container < h.After[j].Container })
		for _, name := range sortedKeys(r.podDeps[c]) {
			h.Pods = append(h.Pods, r.podDeps[c][name])
		}
		if len(h.After) > MaxDependencies {
			r.pod.fail(c, fmt.Errorf("container %s waits for %d dependencies, more than the %d podorder allows: "+
				"wait for the few that gate it (a chain a → b → c needs only the nearest)", c, len(h.After), MaxDependencies))
		}
	}
}

// parseLabelAfter reads the label form "db.cache_started.migrate_completed".
func parseLabelAfter(v string) ([]dependency.Dependency, error) {
	if strings.TrimSpace(v) == "" {
		return nil, errors.New("empty dependency list: name at least one container")
	}
	var out []dependency.Dependency
	for _, item := range strings.Split(v, ".") {
		name, cond, hasCond := strings.Cut(item, "_")
		d, err := newDependency(name, cond, hasCond)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// parseAnnotationAfter reads the annotation form "db, cache:started, migrate:completed,
// pod(app=mysql):ready".
func parseAnnotationAfter(v string) ([]dependency.Dependency, []PodDependency, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil, errors.New("empty dependency list: name at least one container")
	}
	items, err := splitOutsideParens(v)
	if err != nil {
		return nil, nil, err
	}
	var out []dependency.Dependency
	var pods []PodDependency
	for _, item := range items {
		item = strings.TrimSpace(item)
		if strings.HasPrefix(item, "pod(") {
			pd, err := parsePodDependency(item)
			if err != nil {
				return nil, nil, err
			}
			pods = append(pods, pd)
			continue
		}
		name, cond, hasCond := strings.Cut(item, ":")
		d, err := newDependency(strings.TrimSpace(name), strings.TrimSpace(cond), hasCond)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, d)
	}
	return out, pods, nil
}

// splitOutsideParens splits on commas that are not inside pod(...).
func splitOutsideParens(v string) ([]string, error) {
	var items []string
	depth, start := 0, 0
	for i, r := range v {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ')' at offset %d", i)
			}
		case ',':
			if depth == 0 {
				items = append(items, v[start:i])
				start = i + 1
			}
		}
	}
	if depth != 0 {
		return nil, errors.New("unbalanced '(': close pod(...)")
	}
	return append(items, v[start:]), nil
}

func newDependency(name, cond string, hasCond bool) (dependency.Dependency, error) {
	if !validContainerName(name) {
		return dependency.Dependency{}, fmt.Errorf("%s is not a container name (lowercase letters, digits and '-', at most 63)", Quote(name))
	}
	c := dependency.Default
	if hasCond {
		var err error
		if c, err = dependency.Parse(cond); err != nil {
			return dependency.Dependency{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	return dependency.Dependency{Container: name, Condition: c}, nil
}

// PodDependency is a dependency on other pods: met when at least one pod matching Selector (in
// Namespace, or the dependent's own namespace when empty) meets Condition for all its containers.
type PodDependency struct {
	// Name is the synthetic dependency name the hook waits on, derived from the declaration.
	Name string
	// Namespace is set only for a cross-namespace dependency, "pod(<namespace>/<selector>)".
	Namespace string
	// Selector is an equality-based label selector, "app=kafka,tier=broker".
	Selector  string
	Condition dependency.Condition
}

// String formats the dependency as it is declared.
func (d PodDependency) String() string {
	sel := d.Selector
	if d.Namespace != "" {
		sel = d.Namespace + "/" + sel
	}
	return fmt.Sprintf("pod(%s):%s", sel, d.Condition)
}

// parsePodDependency reads "pod(app=mysql):ready" or "pod(other-ns/app=mysql)".
func parsePodDependency(item string) (PodDependency, error) {
	inner, rest, ok := strings.Cut(strings.TrimPrefix(item, "pod("), ")")
	if !ok {
		return PodDependency{}, fmt.Errorf("%s: want pod(<label>=<value>[,...])[:condition]", Quote(item))
	}
	d := PodDependency{Condition: dependency.Default}
	if rest = strings.TrimSpace(rest); rest != "" {
		c, ok := strings.CutPrefix(rest, ":")
		if !ok {
			return PodDependency{}, fmt.Errorf("%s: want pod(...):<condition> after the selector", Quote(item))
		}
		cond, err := dependency.Parse(strings.TrimSpace(c))
		if err != nil {
			return PodDependency{}, fmt.Errorf("%s: %w", Quote(item), err)
		}
		d.Condition = cond
	}
	if ns, sel, hasNS := strings.Cut(inner, "/"); hasNS {
		if !validContainerName(ns) {
			return PodDependency{}, fmt.Errorf("%s: %s is not a namespace name", Quote(item), Quote(ns))
		}
		d.Namespace, inner = ns, sel
	}
	var terms []string
	for _, term := range strings.Split(inner, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(term), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || !validLabelKey(k) || !validLabelValue(v) {
			return PodDependency{}, fmt.Errorf("%s: selector term %s: want <label>=<value>", Quote(item), Quote(strings.TrimSpace(term)))
		}
		terms = append(terms, k+"="+v)
	}
	sort.Strings(terms)
	d.Selector = strings.Join(terms, ",")
	d.Name = podDependencyName(d)
	return d, nil
}

// podDependencyName names the synthetic tombstone of a pod dependency. The dot cannot appear in a
// container name (a DNS label), so it never names a container; 128 bits of SHA-256 of the normalised
// declaration never name two different selectors in practice (and checkPodLimits refuses it if so).
func podDependencyName(d PodDependency) string {
	sum := sha256.Sum256([]byte(d.String()))
	return "pod." + hex.EncodeToString(sum[:16])
}

func validLabelKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		name, prefix = prefix, ""
	}
	if hasPrefix && (prefix == "" || len(prefix) > 253 || strings.Trim(prefix, "abcdefghijklmnopqrstuvwxyz0123456789-.") != "") {
		return false
	}
	return name != "" && validLabelValue(name)
}

func validLabelValue(v string) bool {
	if len(v) > 63 {
		return false
	}
	for i, r := range v {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || i == len(v)-1 || (r != '-' && r != '_' && r != '.')) {
			return false
		}
	}
	return true
}
