package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ReadFiles explains what each -f argument names: a manifest file, a directory's *.yaml, *.yml and
// *.json files (sorted, not recursive, as `kubectl apply -f DIR` reads them), or - for stdin.
func ReadFiles(stdin io.Reader, args []string, opt Options) ([]Workload, error) {
	var all []Workload
	for _, arg := range args {
		names, err := manifestFiles(arg)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			ws, err := readManifest(stdin, name, opt)
			if err != nil {
				return nil, err
			}
			all = append(all, ws...)
		}
	}
	return all, nil
}

// manifestFiles lists what one -f argument names: the file itself, standard input (-), or a
// directory's *.yaml, *.yml and *.json files, sorted, as `kubectl apply -f DIR` reads them.
func manifestFiles(name string) ([]string, error) {
	if name == "-" {
		return []string{name}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err // it names the file
	}
	info, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{name}, nil
	}
	entries, err := os.ReadDir(name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		switch filepath.Ext(e.Name()) {
		case ".yaml", ".yml", ".json":
			if !e.IsDir() {
				out = append(out, filepath.Join(name, e.Name()))
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml, *.yml or *.json file in the directory", name)
	}
	return out, nil
}

// readManifest reads the workloads of one manifest file, or - for standard input.
func readManifest(stdin io.Reader, name string, opt Options) ([]Workload, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err // it names the file
		}
		defer f.Close()
		r = f
	}
	ws, err := Read(r, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i := range ws {
		ws[i].File = name
	}
	return ws, nil
}

// Read explains every pod template in a stream of YAML or JSON documents ("---" separated): Pods,
// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs, and the items of a List
// (what `kubectl get -o yaml` writes), recursively. Other kinds are skipped.
func Read(r io.Reader, opt Options) ([]Workload, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("read manifests: more than %d MiB: split them", maxManifest>>20)
	}
	var out []Workload
	for i, doc := range splitDocuments(data) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		ws, err := readObject(doc, fmt.Sprintf("document %d", i+1), opt)
		if err != nil {
			return nil, err
		}
		out = append(out, ws...)
	}
	return out, nil
}

// readObject explains one object: a workload, a List of objects, or nothing.
func readObject(doc []byte, where string, opt Options) ([]Workload, error) {
	var obj struct {
		Kind     string
		Metadata struct{ Name, Namespace string }
		Items    []json.RawMessage
		Spec     struct {
			Template    *corev1.PodTemplateSpec
			JobTemplate *struct {
				Spec struct{ Template *corev1.PodTemplateSpec }
			}
		}
	}
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var tpl *corev1.PodTemplateSpec
	switch obj.Kind {
	case "Pod":
		var pod corev1.Pod
		if err := yaml.Unmarshal(doc, &pod); err != nil {
			return nil, fmt.Errorf("%s (Pod %s): %w", where, obj.Metadata.Name, err)
		}
		tpl = &corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		tpl = obj.Spec.Template
	case "CronJob":
		if obj.Spec.JobTemplate != nil {
			tpl = obj.Spec.JobTemplate.Spec.Template
		}
	default:
		if !strings.HasSuffix(obj.Kind, "List") {
			return nil, nil
		}
		var out []Workload
		for i, item := range obj.Items {
			ws, err := readObject(item, fmt.Sprintf("%s, item %d", where, i+1), opt)
			if err != nil {
				return nil, err
			}
			out = append(out, ws...)
		}
		return out, nil
	}
	if tpl == nil {
		return nil, fmt.Errorf("%s (%s %s): no pod template", where, obj.Kind, obj.Metadata.Name)
	}
	// Controllers create their pods in their own namespace, whatever the template says.
	ns := obj.Metadata.Namespace
	if ns == "" {
		ns = opt.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	return []Workload{Explain(obj.Kind+"/"+obj.Metadata.Name, ns, tpl, opt)}, nil
}

func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimRight(line, " \t\r") == "---" {
			docs = append(docs, []byte(strings.Join(cur, "\n")))
			cur = nil
			continue
		}
		cur = append(cur, line)
	}
	return append(docs, []byte(strings.Join(cur, "\n")))
}
