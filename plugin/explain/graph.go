package explain

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Graph is a workload's dependency graph: containers (and pods depended on) as nodes, in the layers
// explain starts them in, and edges that say who waits for whom and for what.
type Graph struct {
	Name   string
	Nodes  []Node
	Edges  []Edge
	Layers [][]string
	Errors []string
}

// Node is a container of the pod, or pods it depends on.
type Node struct {
	ID, Label string
	// Kind is init, sidecar, container or pods.
	Kind string
	// Problem is set on a container podorder refuses ("refused") or never releases ("never released").
	Problem string
}

// Edge says that To starts after From: Label is the condition, kubelet's own order, or a stop-with.
type Edge struct {
	From, To, Label string
	// Kubelet marks kubelet's order of init containers; StopWith a stop binding; Problem an edge into
	// a container that is refused or never released.
	Kubelet, StopWith, Problem bool
}

// Kinds of nodes.
const (
	NodeInit      = "init"
	NodeSidecar   = "sidecar"
	NodeContainer = "container"
	NodePods      = "pods"
)

// BuildGraph draws a workload as explain decided it: init containers and native sidecars in
// kubelet's order, then the regular containers by start layer, then those never started.
func BuildGraph(w Workload) Graph {
	g := Graph{Name: w.Name, Errors: w.Errors}
	podsID := func(d Dependency) string { return "pod(" + d.Pods + ")" }
	var podLayer []string
	seen := map[string]bool{}
	for _, c := range slices.Sorted(maps.Keys(w.Waits)) {
		for _, d := range w.Waits[c] {
			if d.Pods != "" && !seen[podsID(d)] {
				seen[podsID(d)] = true
				podLayer = append(podLayer, podsID(d))
				g.Nodes = append(g.Nodes, Node{ID: podsID(d), Label: "pods " + d.Pods, Kind: NodePods})
			}
		}
	}
	if len(podLayer) > 0 {
		g.Layers = append(g.Layers, podLayer)
	}
	for i, c := range w.Init {
		kind, after := NodeInit, "kubelet: completed"
		if w.sidecars[c] {
			kind, after = NodeSidecar, "kubelet: started"
		}
		g.Nodes = append(g.Nodes, Node{ID: c, Label: c, Kind: kind})
		g.Layers = append(g.Layers, []string{c})
		if i+1 < len(w.Init) {
			g.Edges = append(g.Edges, Edge{From: c, To: w.Init[i+1], Label: after, Kubelet: true})
		} else if len(w.Layers) > 0 {
			for _, r := range w.Layers[0] {
				g.Edges = append(g.Edges, Edge{From: c, To: r, Label: after, Kubelet: true})
			}
		}
	}
	problem := map[string]string{}
	for c := range w.refused {
		problem[c] = "refused"
	}
	for _, c := range w.NeverReleased {
		problem[c] = "never released"
	}
	for _, layer := range w.Layers {
		for _, c := range layer {
			g.Nodes = append(g.Nodes, Node{ID: c, Label: c, Kind: NodeContainer})
		}
		g.Layers = append(g.Layers, layer)
	}
	var last []string
	for _, c := range slices.Sorted(maps.Keys(problem)) {
		if !slices.Contains(w.Init, c) {
			g.Nodes = append(g.Nodes, Node{ID: c, Label: c, Kind: NodeContainer, Problem: problem[c]})
			last = append(last, c)
		}
	}
	if len(last) > 0 {
		g.Layers = append(g.Layers, last)
	}
	for i := range g.Nodes {
		if p := problem[g.Nodes[i].ID]; p != "" {
			g.Nodes[i].Problem = p
		}
	}
	for _, c := range slices.Sorted(maps.Keys(w.Waits)) {
		for _, d := range w.Waits[c] {
			from := d.Container
			if d.Pods != "" {
				from = podsID(d)
			}
			g.Edges = append(g.Edges, Edge{From: from, To: c, Label: d.Condition, Problem: problem[c] != ""})
		}
	}
	for _, b := range w.StopWith {
		for _, t := range b.When {
			g.Edges = append(g.Edges, Edge{From: t.Container, To: b.Container, Label: "stop-with: " + t.On, StopWith: true})
		}
	}
	// An edge may name a container the pod does not have (an error says so): it gets a node.
	known := map[string]bool{}
	for _, n := range g.Nodes {
		known[n.ID] = true
	}
	for _, e := range g.Edges {
		for _, id := range []string{e.From, e.To} {
			if !known[id] {
				known[id] = true
				g.Nodes = append(g.Nodes, Node{ID: id, Label: id, Kind: NodeContainer, Problem: "not in the pod"})
				g.Layers = append(g.Layers, []string{id})
			}
		}
	}
	return g
}

// WriteDOT writes each workload's graph in Graphviz's DOT language, one digraph each: `dot -Tsvg`
// draws them. Kubelet's order is grey, stop-with dashed, what podorder rejects red.
func WriteDOT(out io.Writer, ws []Workload) error {
	var b strings.Builder
	for i, w := range ws {
		if i > 0 {
			b.WriteString("\n")
		}
		g := BuildGraph(w)
		fmt.Fprintf(&b, "digraph %s {\n", quote(w.Name))
		b.WriteString("  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n")
		label := w.Name
		if !w.UsesPodorder {
			label += ": no podorder keys; kubelet's own order"
		}
		for _, e := range g.Errors {
			label += "\nerror: " + e
		}
		fmt.Fprintf(&b, "  label=%s;\n  labelloc=t;\n", quote(label))
		if len(g.Errors) > 0 {
			b.WriteString("  fontcolor=red;\n")
		}
		for _, n := range g.Nodes {
			attrs := []string{"label=" + quote(nodeLabel(n))}
			switch n.Kind {
			case NodeInit:
				attrs = append(attrs, `style="rounded"`)
			case NodeSidecar:
				attrs = append(attrs, `style="rounded,bold"`)
			case NodePods:
				attrs = append(attrs, "shape=ellipse", `style="dashed"`)
			}
			if n.Problem != "" {
				attrs = append(attrs, "color=red", "fontcolor=red")
			}
			fmt.Fprintf(&b, "  %s [%s];\n", quote(n.ID), strings.Join(attrs, ", "))
		}
		for _, layer := range g.Layers {
			ids := make([]string, len(layer))
			for i, id := range layer {
				ids[i] = quote(id)
			}
			fmt.Fprintf(&b, "  { rank=same; %s; }\n", strings.Join(ids, "; "))
		}
		for _, e := range g.Edges {
			attrs := []string{"label=" + quote(e.Label)}
			switch {
			case e.Problem:
				attrs = append(attrs, "color=red", "fontcolor=red")
			case e.Kubelet:
				attrs = append(attrs, "color=gray50", "fontcolor=gray50")
			case e.StopWith:
				attrs = append(attrs, `style="dashed"`, "constraint=false")
			}
			fmt.Fprintf(&b, "  %s -> %s [%s];\n", quote(e.From), quote(e.To), strings.Join(attrs, ", "))
		}
		b.WriteString("}\n")
	}
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	return problems(ws)
}

// nodeLabel is a node's text: its name, and what it is when not a plain container.
func nodeLabel(n Node) string {
	l := n.Label
	switch n.Kind {
	case NodeInit:
		l += "\n(init)"
	case NodeSidecar:
		l += "\n(native sidecar)"
	}
	if n.Problem != "" {
		l += "\n" + n.Problem
	}
	return l
}

// quote writes s as a DOT quoted string.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
