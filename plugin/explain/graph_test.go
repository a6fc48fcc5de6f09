package explain

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEachGraphIsAsRecorded compares the DOT and the SVG of testdata/graph/*.yaml and
// testdata/everything.yaml with their recorded files; `go test -run Graph -update` rewrites them.
func TestEachGraphIsAsRecorded(t *testing.T) {
	inputs, err := filepath.Glob("testdata/graph/*.yaml")
	require.NoError(t, err)
	inputs = append(inputs, "testdata/everything.yaml")
	for _, in := range inputs {
		ws, err := ReadFiles(nil, []string{in}, Options{})
		require.NoError(t, err)
		for ext, write := range map[string]func(io.Writer, []Workload) error{".dot": WriteDOT, ".svg": WriteSVG} {
			t.Run(filepath.Base(in)+ext, func(t *testing.T) {
				var out bytes.Buffer
				err := write(&out, ws)
				if err != nil {
					require.ErrorIs(t, err, ErrProblems)
				}
				golden := filepath.Join("testdata", "graph", strings.TrimSuffix(filepath.Base(in), ".yaml")+ext)
				if *update {
					require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
				}
				want, err := os.ReadFile(golden)
				require.NoError(t, err)
				assert.Equal(t, string(want), out.String())
				if ext == ".dot" {
					checkDOT(t, out.String())
				} else {
					checkXML(t, out.Bytes())
				}
			})
		}
	}
}

func TestTheGraphFollowsKubeletsOrderThenTheHolds(t *testing.T) {
	ws, err := ReadFiles(nil, []string{"testdata/graph/sidecars.yaml"}, Options{})
	require.NoError(t, err)
	g := BuildGraph(ws[0])
	assert.Equal(t, [][]string{{"setup"}, {"mesh"}, {"db", "migrate", "exporter"}, {"api"}, {"web"}}, g.Layers)
	var edges []string
	for _, e := range g.Edges {
		edges = append(edges, e.From+" -> "+e.To+": "+e.Label)
	}
	assert.Equal(t, []string{
		"setup -> mesh: kubelet: completed",
		"mesh -> db: kubelet: started", "mesh -> migrate: kubelet: started", "mesh -> exporter: kubelet: started",
		"db -> api: started", "migrate -> api: completed",
		"api -> web: ready",
		"web -> exporter: stop-with: exited",
	}, edges)
	kinds := map[string]string{}
	for _, n := range g.Nodes {
		kinds[n.ID] = n.Kind
	}
	assert.Equal(t, NodeSidecar, kinds["mesh"])
	assert.Equal(t, NodeInit, kinds["setup"])
}

func TestAGraphShowsWhatPodorderRejectsInRed(t *testing.T) {
	ws, err := ReadFiles(nil, []string{"testdata/everything.yaml"}, Options{})
	require.NoError(t, err)
	var out bytes.Buffer
	require.ErrorIs(t, WriteDOT(&out, ws), ErrProblems)
	dot := out.String()
	assert.Contains(t, dot, `"a" [label="a\nrefused", color=red, fontcolor=red];`)
	assert.Contains(t, dot, `"report" [label="report\nnever released", color=red, fontcolor=red];`)
	assert.Contains(t, dot, `"a" -> "report" [label="ready", color=red, fontcolor=red];`)
	assert.Contains(t, dot, "error: containers a, b, c: dependency cycle")
}

// checkDOT parses the subset of DOT that WriteDOT writes: digraphs of attribute statements, node
// statements, edges and { rank=same; ... } groups; every edge's ends are declared nodes.
func checkDOT(t *testing.T, src string) {
	t.Helper()
	toks, err := dotTokens(src)
	require.NoError(t, err)
	p := &dotParser{toks: toks}
	graphs := 0
	for !p.done() {
		require.NoError(t, p.digraph())
		graphs++
	}
	assert.Positive(t, graphs)
}

type dotParser struct {
	toks []string
	i    int
	// nodes are the nodes of the digraph being read; edges its edges' ends.
	nodes, ends map[string]bool
}

func (p *dotParser) done() bool { return p.i >= len(p.toks) }

func (p *dotParser) next() string {
	if p.done() {
		return ""
	}
	p.i++
	return p.toks[p.i-1]
}

func (p *dotParser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[p.i]
}

func (p *dotParser) expect(tok string) error {
	if got := p.next(); got != tok {
		return fmt.Errorf("token %d: want %q, got %q", p.i, tok, got)
	}
	return nil
}

func isID(tok string) bool {
	return strings.HasPrefix(tok, `"`) || tok != "" && (unicode.IsLetter(rune(tok[0])) || tok[0] == '_' || unicode.IsDigit(rune(tok[0])))
}

// digraph: "digraph" ID "{" stmt* "}".
func (p *dotParser) digraph() error {
	if err := p.expect("digraph"); err != nil {
		return err
	}
	if !isID(p.next()) {
		return errors.New("digraph without a name")
	}
	p.nodes, p.ends = map[string]bool{}, map[string]bool{}
	if err := p.expect("{"); err != nil {
		return err
	}
	for p.peek() != "}" {
		if p.done() {
			return errors.New("unterminated digraph")
		}
		if err := p.stmt(); err != nil {
			return err
		}
	}
	p.next()
	for end := range p.ends {
		if !p.nodes[end] {
			return fmt.Errorf("edge to undeclared node %s", end)
		}
	}
	return nil
}

// stmt: ID "=" ID ";" | ("node"|"edge"|"graph") attrs ";" | ID attrs ";" | ID "->" ID attrs ";" | "{" stmt* "}".
func (p *dotParser) stmt() error {
	tok := p.next()
	switch {
	case tok == "{":
		for p.peek() != "}" {
			if p.done() {
				return errors.New("unterminated group")
			}
			if err := p.stmt(); err != nil {
				return err
			}
		}
		p.next()
		return nil
	case tok == "node" || tok == "edge" || tok == "graph":
		if err := p.attrs(); err != nil {
			return err
		}
	case isID(tok) && p.peek() == "=":
		p.next()
		if !isID(p.next()) {
			return fmt.Errorf("attribute %s without a value", tok)
		}
	case isID(tok) && p.peek() == "->":
		p.next()
		to := p.next()
		if !isID(to) {
			return fmt.Errorf("edge from %s to %q", tok, to)
		}
		p.ends[tok], p.ends[to] = true, true
		if p.peek() == "[" {
			if err := p.attrs(); err != nil {
				return err
			}
		}
	case isID(tok):
		p.nodes[tok] = true
		if p.peek() == "[" {
			if err := p.attrs(); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("token %d: unexpected %q", p.i, tok)
	}
	return p.expect(";")
}

// attrs: "[" (ID "=" ID ("," ID "=" ID)*)? "]".
func (p *dotParser) attrs() error {
	if err := p.expect("["); err != nil {
		return err
	}
	for p.peek() != "]" {
		if k := p.next(); !isID(k) {
			return fmt.Errorf("attribute name %q", k)
		}
		if err := p.expect("="); err != nil {
			return err
		}
		if v := p.next(); !isID(v) {
			return fmt.Errorf("attribute value %q", v)
		}
		if p.peek() == "," {
			p.next()
		}
	}
	p.next()
	return nil
}

// dotTokens splits DOT into tokens: quoted strings (with \" escapes), identifiers and numbers,
// "->" and the punctuation { } [ ] = ; ,.
func dotTokens(src string) ([]string, error) {
	var toks []string
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t':
			i++
		case c == '"':
			j := i + 1
			for ; j < len(src) && src[j] != '"'; j++ {
				if src[j] == '\\' {
					j++
				}
				if src[j] == '\n' {
					return nil, fmt.Errorf("newline in a string at %d", j)
				}
			}
			if j >= len(src) {
				return nil, errors.New("unterminated string")
			}
			toks = append(toks, src[i:j+1])
			i = j + 1
		case strings.HasPrefix(src[i:], "->"):
			toks = append(toks, "->")
			i += 2
		case strings.ContainsRune("{}[]=;,", rune(c)):
			toks = append(toks, string(c))
			i++
		case c == '_' || c == '.' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)):
			j := i
			for j < len(src) && (src[j] == '_' || src[j] == '.' || unicode.IsLetter(rune(src[j])) || unicode.IsDigit(rune(src[j]))) {
				j++
			}
			toks = append(toks, src[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return toks, nil
}

// checkXML fails t unless doc is well-formed XML whose root is svg.
func checkXML(t *testing.T, doc []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	assert.Equal(t, "svg", root)
}

func TestTheDOTCheckRefusesWhatIsNotDOT(t *testing.T) {
	for _, src := range []string{`digraph "x" { "a" -> "b"; }`, `digraph "x" { "a" [label="a"] }`, `digraph "x" { "a" [label="a; }`} {
		toks, err := dotTokens(src)
		if err != nil {
			continue
		}
		p := &dotParser{toks: toks}
		assert.Error(t, p.digraph(), src)
	}
}
