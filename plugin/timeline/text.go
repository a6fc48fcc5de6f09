package timeline

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Width is the text chart's width in columns: it fits a 100-column terminal.
const Width = 100

// The text chart's columns: the name (with the critical path's mark), the bars, what follows them.
const (
	nameColumns = 20
	barColumns  = 62
)

// glyphs draws each phase without colour.
var glyphs = map[string]rune{
	PhaseCreated:  '·',
	PhaseHeld:     '░',
	PhaseRunning:  '█',
	PhaseReady:    '▓',
	PhaseStopping: '▒',
	PhaseMet:      '≡',
}

// Legend says what each glyph means.
const Legend = "legend: · created  ░ held by podorder  █ running  ▓ ready  ▒ stopping  ≡ pods met  * critical path"

// WriteText draws the chart as a Gantt chart for a terminal: one bar per attempt, each with a line
// that says what held it, what released it, when it was ready and how it ended.
func WriteText(w io.Writer, c Chart) error {
	var b strings.Builder
	span := c.End.Sub(c.Start)
	attempts, containers := 0, map[string]bool{}
	for _, bar := range c.Bars {
		if bar.Pods == "" {
			attempts++
			containers[bar.Container] = true
		}
	}
	gone := ""
	if c.Removed {
		gone = " (removed)"
	}
	head := fmt.Sprintf("pod %s%s: %d containers, %d attempts, %s shown from the first creation", c.Pod, gone, len(containers), attempts, short(span))
	for _, line := range wrap(head, Width) {
		b.WriteString(line + "\n")
	}
	if c.Dropped > 0 {
		fmt.Fprintf(&b, "(%d older events were dropped to bound the timeline)\n", c.Dropped)
	}
	if len(c.Bars) == 0 {
		b.WriteString("no container yet\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	b.WriteString("\n" + axis(span) + "\n")
	for _, bar := range c.Bars {
		mark := "  "
		if bar.Critical {
			mark = "* "
		}
		label := fit(bar.Label(), nameColumns-3)
		fmt.Fprintf(&b, "%s%-*s %s  %s\n", mark, nameColumns-3, label, draw(c, bar), end(bar))
		for _, line := range wrap(describe(c, bar), Width-nameColumns) {
			b.WriteString(strings.Repeat(" ", nameColumns) + line + "\n")
		}
	}
	for _, m := range c.Marks {
		b.WriteString(fit(fmt.Sprintf("  pod at %s: %s", c.since(m.At), m.Detail), Width) + "\n")
	}
	b.WriteString(Legend + "\n")
	if path := c.CriticalPath(); path != "" {
		for i, line := range wrap("critical path: "+path, Width) {
			if i > 0 {
				line = "  " + line
			}
			b.WriteString(line + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// axis is the line of times over the bars: the start, each quarter, the end.
func axis(span time.Duration) string {
	line := []rune(strings.Repeat(" ", nameColumns+barColumns+8))
	copy(line, []rune("  CONTAINER"))
	free := nameColumns
	for k := 0; k <= 4; k++ {
		label := []rune("|" + short(span*time.Duration(k)/4))
		at := nameColumns + k*(barColumns-1)/4
		if k == 4 {
			label = []rune(short(span) + "|")
			at = nameColumns + barColumns - len(label)
		}
		if at < free {
			continue
		}
		copy(line[at:], label)
		free = at + len(label) + 1
	}
	return strings.TrimRight(string(line), " ")
}

// column is where t falls among the bar columns.
func column(c Chart, t time.Time) int {
	span := c.End.Sub(c.Start)
	if span <= 0 {
		return 0
	}
	return min(barColumns-1, max(0, int(float64(t.Sub(c.Start))/float64(span)*barColumns)))
}

// draw is a bar's columns: each phase from its column, every phase at least one column wide.
func draw(c Chart, bar Bar) string {
	cells := []rune(strings.Repeat(" ", barColumns))
	for _, s := range bar.Segments {
		from, to := column(c, s.From), column(c, s.To)
		if s.Open || !s.To.Before(c.End) {
			to = barColumns
		}
		to = max(to, from+1)
		for i := from; i < to; i++ {
			cells[i] = glyphs[s.Phase]
		}
	}
	if len(bar.Segments) == 0 && bar.Undone {
		cells[column(c, bar.Created)] = 'x'
	}
	return string(cells)
}

// end is what follows a bar: how it ended, or "…" and its phase when it goes on.
func end(bar Bar) string {
	switch {
	case bar.Undone:
		return "undone"
	case bar.ExitCode != nil:
		return fmt.Sprintf("exit %d", *bar.ExitCode)
	case len(bar.Segments) == 0:
		return ""
	}
	return bar.Segments[len(bar.Segments)-1].Phase + "…"
}

// describe says in words what the bar shows.
func describe(c Chart, bar Bar) string {
	var parts []string
	if bar.Pods != "" {
		if bar.Ready == nil {
			return bar.Pods + ": never met"
		}
		parts = append(parts, fmt.Sprintf("%s: met at %s", bar.Pods, c.since(*bar.Ready)))
		if bar.Exited != nil {
			parts = append(parts, "unmet again at "+c.since(*bar.Exited))
		}
		return strings.Join(parts, "; ")
	}
	switch {
	case bar.HeldOn != "":
		parts = append(parts, "held on "+bar.HeldOn)
	case bar.Running != nil:
		parts = append(parts, "not held, started at "+c.since(*bar.Running))
	}
	switch {
	case bar.Released != nil && bar.ReleasedBy != "":
		parts = append(parts, fmt.Sprintf("released at %s by %s", c.since(*bar.Released), bar.ReleasedHow))
	case bar.Released != nil:
		parts = append(parts, fmt.Sprintf("released at %s: %s", c.since(*bar.Released), bar.ReleasedHow))
	case bar.HoldFailed != "":
		parts = append(parts, "hold failed: "+bar.HoldFailed)
	case bar.HeldOn != "" && bar.ExitCode == nil:
		parts = append(parts, "still held")
	}
	if bar.Ready != nil {
		parts = append(parts, fmt.Sprintf("ready at %s (%s)", c.since(*bar.Ready), bar.ReadyBy))
	}
	if bar.Stopping != nil {
		parts = append(parts, fmt.Sprintf("stopping at %s: %s", c.since(*bar.Stopping), bar.StoppingWhy))
	}
	switch {
	case bar.Undone:
		parts = append(parts, "creation undone at "+c.since(*bar.Exited))
	case bar.ExitCode != nil && bar.ExitHow != "":
		parts = append(parts, fmt.Sprintf("exited %d at %s: %s", *bar.ExitCode, c.since(*bar.Exited), bar.ExitHow))
	case bar.ExitCode != nil:
		parts = append(parts, fmt.Sprintf("exited %d at %s", *bar.ExitCode, c.since(*bar.Exited)))
	}
	return strings.Join(parts, "; ")
}

// CriticalPath says the critical path in words: "db ready at 840ms (probe passed: tcp:5432) → api
// released at 840ms, ready at 1.20s (...) → web released at 1.21s".
func (c Chart) CriticalPath() string {
	var steps []string
	for _, i := range c.Critical {
		b := c.Bars[i]
		var what []string
		switch {
		case b.Released != nil:
			what = append(what, "released at "+c.since(*b.Released))
		case b.Running != nil:
			what = append(what, "started at "+c.since(*b.Running))
		}
		if b.Ready != nil {
			what = append(what, fmt.Sprintf("ready at %s (%s)", c.since(*b.Ready), b.ReadyBy))
		}
		steps = append(steps, b.Label()+" "+strings.Join(what, ", "))
	}
	return strings.Join(steps, " → ")
}

// fit cuts s to n columns, with "…" when cut.
func fit(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// wrap breaks s into lines of at most n columns, between words.
func wrap(s string, n int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		for utf8.RuneCountInString(word) > n {
			if line != "" {
				lines, line = append(lines, line), ""
			}
			r := []rune(word)
			lines, word = append(lines, string(r[:n])), string(r[n:])
		}
		switch {
		case line == "":
			line = word
		case utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) <= n:
			line += " " + word
		default:
			lines, line = append(lines, line), word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// WriteJSON writes the chart as JSON (see Chart).
func WriteJSON(w io.Writer, c Chart) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(c)
}
