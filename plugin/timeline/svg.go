package timeline

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"
)

// The SVG's geometry, in pixels: a column of names, the bars, room for how each ended.
const (
	svgName   = 170
	svgBars   = 760
	svgEnd    = 90
	svgRow    = 34
	svgBar    = 14
	svgTop    = 64
	svgMargin = 10
)

// colours fills each phase; the text chart's glyphs say the same without colour.
var colours = map[string]string{
	PhaseCreated:  "#d9d9d9",
	PhaseHeld:     "#f4b183",
	PhaseRunning:  "#9dc3e6",
	PhaseReady:    "#70ad47",
	PhaseStopping: "#a5a5a5",
	PhaseMet:      "#b4a7d6",
}

// phaseNames lists the phases in the legend's order.
var phaseNames = []string{PhaseCreated, PhaseHeld, PhaseRunning, PhaseReady, PhaseStopping, PhaseMet}

// WriteSVG draws the chart as a self-contained SVG, as `systemd-analyze plot` does for a boot: one
// row per attempt, its phases coloured, what it said below it, the critical path outlined in red.
// Hovering a bar shows its facts.
func WriteSVG(w io.Writer, c Chart) error {
	var b strings.Builder
	width := svgMargin*2 + svgName + svgBars + svgEnd
	height := svgTop + len(c.Bars)*svgRow + len(c.Marks)*16 + 80
	span := c.End.Sub(c.Start)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return svgMargin + svgName
		}
		return svgMargin + svgName + float64(t.Sub(c.Start))/float64(span)*svgBars
	}
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">
<style>
text.name { font-weight: normal; }
text.critical { font-weight: bold; fill: #c00000; }
text.detail { font-size: 10px; fill: #404040; }
line.tick { stroke: #e0e0e0; }
rect.outline { fill: none; stroke: #c00000; stroke-width: 2; }
</style>
<rect width="100%%" height="100%%" fill="#ffffff"/>
`, width, height, width, height)
	title := fmt.Sprintf("pod %s: %s from the first creation to the last event", c.Pod, short(span))
	if c.Removed {
		title += " (the pod is gone)"
	}
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">%s</text>`+"\n", svgMargin, esc(title))
	bottom := svgTop + len(c.Bars)*svgRow
	for k := 0; k <= 10; k++ {
		t := c.Start.Add(span * time.Duration(k) / 10)
		fmt.Fprintf(&b, `<line class="tick" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`+"\n", x(t), svgTop-14, x(t), bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", x(t), svgTop-18, esc(short(span*time.Duration(k)/10)))
	}
	for i, bar := range c.Bars {
		y := svgTop + i*svgRow
		class := "name"
		label := bar.Label()
		if bar.Critical {
			class, label = "critical", "* "+label
		}
		fmt.Fprintf(&b, `<text class="%s" x="%d" y="%d">%s</text>`+"\n", class, svgMargin, y+svgBar-2, esc(label))
		right := x(bar.Created)
		for _, s := range bar.Segments {
			x0, x1 := x(s.From), x(s.To)
			if s.Open {
				x1 = x(c.End)
			}
			wd := max(1, x1-x0)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				x0, y, wd, svgBar, colours[s.Phase], esc(fmt.Sprintf("%s: %s %s–%s", bar.Label(), s.Phase, c.since(s.From), c.since(s.To))))
			right = max(right, x0+wd)
		}
		if bar.Critical && len(bar.Segments) > 0 {
			x0 := x(bar.Segments[0].From)
			fmt.Fprintf(&b, `<rect class="outline" x="%.1f" y="%d" width="%.1f" height="%d"/>`+"\n", x0-1, y-1, right-x0+2, svgBar+2)
		}
		if bar.Released != nil && bar.HeldOn != "" {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#000000" stroke-width="1.5"><title>%s</title></line>`+"\n",
				x(*bar.Released), y-3, x(*bar.Released), y+svgBar+3, esc("released by "+bar.ReleasedHow))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11">%s</text>`+"\n", right+4, y+svgBar-2, esc(end(bar)))
		fmt.Fprintf(&b, `<text class="detail" x="%d" y="%d">%s</text>`+"\n", svgMargin+svgName, y+svgBar+12, esc(fit(describe(c, bar), 150)))
	}
	y := bottom + 4
	for _, m := range c.Marks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#7030a0" stroke-dasharray="4 3"/>`+"\n", x(m.At), svgTop-10, x(m.At), bottom)
		y += 16
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#7030a0">%s</text>`+"\n", svgMargin, y, esc(fmt.Sprintf("pod at %s: %s", c.since(m.At), m.Detail)))
	}
	y += 22
	lx := svgMargin
	for _, p := range phaseNames {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="14" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n", lx, y-9, colours[p], lx+18, y, p)
		lx += 30 + 8*len(p)
	}
	fmt.Fprintf(&b, `<rect class="outline" x="%d" y="%d" width="14" height="10"/><text x="%d" y="%d">critical path</text>`+"\n", lx, y-9, lx+18, y)
	if path := c.CriticalPath(); path != "" {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11">%s</text>`+"\n", svgMargin, y+22, esc(fit("critical path: "+path, 170)))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// esc escapes text for XML.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
