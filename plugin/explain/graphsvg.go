package explain

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The graph SVG's geometry, in pixels.
const (
	gNodeH    = 40
	gLayerGap = 90
	gNodeGap  = 36
	gMargin   = 20
	gTitle    = 28
)

// box is a node placed on the canvas.
type box struct {
	x, y, w float64
	n       Node
}

// WriteSVG draws each workload's graph as a self-contained SVG, layer under layer as explain starts
// them: kubelet's order grey, stop-with dashed, what podorder rejects red. It needs no Graphviz.
func WriteSVG(out io.Writer, ws []Workload) error {
	type placed struct {
		g      Graph
		boxes  map[string]box
		height float64
		title  string
		errors []string
	}
	var all []placed
	width := 400.0
	for _, w := range ws {
		g := BuildGraph(w)
		p := placed{g: g, boxes: map[string]box{}, title: w.Name}
		if !w.UsesPodorder {
			p.title += ": no podorder keys; kubelet's own order"
		}
		nodes := map[string]Node{}
		for _, n := range g.Nodes {
			nodes[n.ID] = n
		}
		rowWidths := make([]float64, len(g.Layers))
		for i, layer := range g.Layers {
			for _, id := range layer {
				rowWidths[i] += nodeWidth(nodes[id]) + gNodeGap
			}
			width = max(width, rowWidths[i]+2*gMargin)
		}
		all = append(all, p)
	}
	for i := range all {
		p := &all[i]
		p.errors = nil
		for _, e := range p.g.Errors {
			p.errors = append(p.errors, wrapWords("error: "+e, int((width-2*gMargin)/6.2))...)
		}
		p.height = gTitle + float64(len(p.errors))*15 + float64(len(p.g.Layers))*(gNodeH+gLayerGap) - gLayerGap/2 + gMargin
	}
	var b strings.Builder
	total := 0.0
	for _, p := range all {
		total += p.height
	}
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">
<defs>
<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#000000"/></marker>
<marker id="arrow-red" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#c00000"/></marker>
<marker id="arrow-grey" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#808080"/></marker>
</defs>
<rect width="100%%" height="100%%" fill="#ffffff"/>
`, width, total+gMargin, width, total+gMargin)
	top := float64(gMargin)
	for _, p := range all {
		g := p.g
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" font-size="14" font-weight="bold">%s</text>`+"\n", gMargin, top+14, xmlText(p.title))
		y := top + gTitle
		for _, e := range p.errors {
			fmt.Fprintf(&b, `<text x="%d" y="%.0f" fill="#c00000" font-size="11">%s</text>`+"\n", gMargin, y+10, xmlText(e))
			y += 15
		}
		y += 10
		nodes := map[string]Node{}
		for _, n := range g.Nodes {
			nodes[n.ID] = n
		}
		for _, layer := range g.Layers {
			row := 0.0
			for _, id := range layer {
				row += nodeWidth(nodes[id]) + gNodeGap
			}
			x := (width - row + gNodeGap) / 2
			for _, id := range layer {
				wd := nodeWidth(nodes[id])
				p.boxes[id] = box{x: x, y: y, w: wd, n: nodes[id]}
				x += wd + gNodeGap
			}
			y += gNodeH + gLayerGap
		}
		// Edges between the same two containers (kubelet's order and podorder's wait) run side by
		// side, each with its label on its own side, instead of on top of each other.
		type pair struct{ from, to string }
		parallel, seen := map[pair]int{}, map[pair]int{}
		for _, e := range g.Edges {
			parallel[pair{e.From, e.To}]++
		}
		for _, e := range g.Edges {
			from, to := p.boxes[e.From], p.boxes[e.To]
			k, n := seen[pair{e.From, e.To}], parallel[pair{e.From, e.To}]
			seen[pair{e.From, e.To}]++
			shift := (float64(k) - float64(n-1)/2) * 24
			colour, marker, dash := "#000000", "arrow", ""
			switch {
			case e.Problem:
				colour, marker = "#c00000", "arrow-red"
			case e.Kubelet:
				colour, marker = "#808080", "arrow-grey"
			}
			if e.StopWith {
				dash = ` stroke-dasharray="5 4"`
			}
			x1, y1 := from.x+from.w/2+shift, from.y+gNodeH
			x2, y2 := to.x+to.w/2+shift, to.y
			switch {
			case to.y < from.y:
				// Back up (a stop-with): from the top of one to the bottom of the other.
				y1, y2 = from.y, to.y+gNodeH
			case to.y == from.y:
				y1, y2 = from.y, to.y
			}
			path := fmt.Sprintf("M %.1f %.1f L %.1f %.1f", x1, y1, x2, y2)
			// Labels sit nearer the target, so that edges fanning out of one node keep theirs apart.
			lx, ly := x1+(x2-x1)*0.62, y1+(y2-y1)*0.62
			if to.y == from.y {
				// Within a layer (a cycle, a stop-with): an arc over the boxes.
				cy := y1 - gLayerGap/2
				path = fmt.Sprintf("M %.1f %.1f Q %.1f %.1f %.1f %.1f", x1, y1, (x1+x2)/2, cy, x2, y2)
				lx, ly = (x1+x2)/2, y1-gLayerGap/4
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="1.3"%s marker-end="url(#%s)"/>`+"\n", path, colour, dash, marker)
			anchor, tx := "start", lx+6 // beside its line, not across it
			switch {
			case to.y == from.y:
				anchor, tx = "middle", lx
			case shift < 0:
				anchor, tx = "end", lx-6
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="10" fill="%s">%s</text>`+"\n", tx, ly, anchor, colour, xmlText(e.Label))
		}
		for _, layer := range g.Layers {
			for _, id := range layer {
				bx := p.boxes[id]
				stroke, fill, dash, rx := "#000000", "#ffffff", "", 0
				switch bx.n.Kind {
				case NodeInit:
					fill, rx = "#eeeeee", 10
				case NodeSidecar:
					fill, rx = "#ddebf7", 10
				case NodePods:
					fill, dash, rx = "#f2f2f2", ` stroke-dasharray="4 3"`, gNodeH/2
				}
				if bx.n.Problem != "" {
					stroke, fill = "#c00000", "#fde9e9"
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="%d" fill="%s" stroke="%s" stroke-width="1.5"%s/>`+"\n",
					bx.x, bx.y, bx.w, gNodeH, rx, fill, stroke, dash)
				lines := strings.Split(nodeLabel(bx.n), "\n")
				for i, l := range lines {
					ty := bx.y + gNodeH/2 + 4 + (float64(i)-float64(len(lines)-1)/2)*13
					fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s">%s</text>`+"\n", bx.x+bx.w/2, ty, stroke, xmlText(l))
				}
			}
		}
		top += p.height
	}
	b.WriteString("</svg>\n")
	if _, err := io.WriteString(out, b.String()); err != nil {
		return err
	}
	return problems(ws)
}

// nodeWidth fits a node's longest line.
func nodeWidth(n Node) float64 {
	longest := 0
	for _, l := range strings.Split(nodeLabel(n), "\n") {
		longest = max(longest, utf8.RuneCountInString(l))
	}
	return max(90, float64(longest)*7.2+20)
}

// xmlText escapes text for XML.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// wrapWords breaks s into lines of at most n characters, between words.
func wrapWords(s string, n int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > n {
			lines, line = append(lines, line), ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
