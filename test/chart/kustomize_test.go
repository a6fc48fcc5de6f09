package chart

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// object is the part of a manifest these tests read.
type object struct {
	Kind     string
	Metadata struct {
		Name      string
		Namespace string
		Labels    map[string]string
	}
	Subjects []struct{ Kind, Name, Namespace string }
	Spec     struct {
		PolicyName        string   `json:"policyName"`
		ValidationActions []string `json:"validationActions"`
		MatchConditions   []struct {
			Name, Expression string
		} `json:"matchConditions"`
		ParamKind *struct{ APIVersion, Kind string } `json:"paramKind"`
		ParamRef  *struct {
			Name, Namespace         string
			ParameterNotFoundAction string `json:"parameterNotFoundAction"`
		} `json:"paramRef"`
	}
}

// kustomize builds an overlay whose kustomization.yaml is body, with %s standing for the relative
// path to daemonset/ (kustomize takes bases only by relative path), and returns its objects by
// kind/name.
func kustomize(t *testing.T, body string) map[string]object {
	t.Helper()
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, filepath.Join(repo, "daemonset"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(strings.ReplaceAll(body, "%s", rel)), 0o644))
	return build(t, overlay)
}

func build(t *testing.T, dir string) map[string]object {
	t.Helper()
	out, err := exec.Command(Kubectl(t), "kustomize", dir).CombinedOutput()
	require.NoError(t, err, "kubectl kustomize %s: %s", dir, out)
	objs := map[string]object{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var o object
		require.NoError(t, yaml.Unmarshal([]byte(doc), &o))
		objs[o.Kind+"/"+o.Metadata.Name] = o
	}
	return objs
}

// guardedUser is the user the status guard narrows: its match condition compares the request's user
// with its parameter, the ServiceAccount its binding names.
func guardedUser(t *testing.T, objs map[string]object, prefix string) string {
	t.Helper()
	policy, binding := objs["ValidatingAdmissionPolicy/"+prefix+"podorder-status-writes"], objs["ValidatingAdmissionPolicyBinding/"+prefix+"podorder-status-writes"]
	require.NotNil(t, policy.Spec.ParamKind, "the guard takes a parameter")
	assert.Equal(t, "ServiceAccount", policy.Spec.ParamKind.Kind)
	require.Len(t, policy.Spec.MatchConditions, 1)
	assert.Equal(t, `request.userInfo.username == "system:serviceaccount:" + params.metadata.namespace + ":" + params.metadata.name`,
		policy.Spec.MatchConditions[0].Expression, "the guard names no namespace of its own")
	assert.Equal(t, prefix+"podorder-status-writes", binding.Spec.PolicyName)
	require.NotNil(t, binding.Spec.ParamRef, "the guard's binding names its ServiceAccount")
	assert.Equal(t, "Allow", binding.Spec.ParamRef.ParameterNotFoundAction, "without the ServiceAccount no token of it authenticates")
	sa, ok := objs["ServiceAccount/"+binding.Spec.ParamRef.Name]
	require.True(t, ok, "the guard's parameter %s is the ServiceAccount the overlay ships", binding.Spec.ParamRef.Name)
	assert.Equal(t, sa.Metadata.Namespace, binding.Spec.ParamRef.Namespace)
	return fmt.Sprintf("system:serviceaccount:%s:%s", binding.Spec.ParamRef.Namespace, binding.Spec.ParamRef.Name)
}

func TestTheKustomizeBaseGoesIntoAnyNamespace(t *testing.T) {
	objs := kustomize(t, "resources: [%s/base]\nnamespace: kube-system\n")
	for key := range objs {
		assert.NotContains(t, key, "Namespace/", "an overlay into kube-system neither creates, relabels nor deletes it")
	}
	crb := objs["ClusterRoleBinding/podorder"]
	require.Len(t, crb.Subjects, 1)
	assert.Equal(t, "kube-system", crb.Subjects[0].Namespace, "the ClusterRoleBinding's subject follows the ServiceAccount")
	assert.Equal(t, "kube-system", objs["DaemonSet/podorder"].Metadata.Namespace)
	assert.Equal(t, "system:serviceaccount:kube-system:podorder", guardedUser(t, objs, ""))
	assert.NotContains(t, strings.Join(keys(objs), " "), "MutatingAdmissionPolicy", "the base runs on Kubernetes >= 1.30")
}

func TestTheKustomizeBaseFollowsANamePrefixAndASecondNamespace(t *testing.T) {
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	root := t.TempDir()
	first, second := filepath.Join(root, "first"), filepath.Join(root, "second")
	require.NoError(t, os.MkdirAll(first, 0o755))
	require.NoError(t, os.MkdirAll(second, 0o755))
	rel, err := filepath.Rel(first, filepath.Join(repo, "daemonset"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(first, "kustomization.yaml"), []byte(fmt.Sprintf(
		"resources: [%[1]s/base]\ncomponents: [%[1]s/components/shutdown-order, %[1]s/components/readiness-gate]\nnamespace: ops\nnamePrefix: x-\n", rel)), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(second, "kustomization.yaml"), []byte("resources: [../first]\nnamespace: kube-system\n"), 0o644))
	objs := build(t, second)
	assert.Equal(t, "kube-system", objs["ClusterRoleBinding/x-podorder"].Subjects[0].Namespace)
	assert.Equal(t, "x-podorder", objs["ClusterRoleBinding/x-podorder"].Subjects[0].Name)
	assert.Equal(t, "system:serviceaccount:kube-system:x-podorder", guardedUser(t, objs, "x-"))
	for _, name := range []string{"podorder-prestop", "podorder-readiness-gate"} {
		assert.Equal(t, "x-"+name, objs["MutatingAdmissionPolicyBinding/x-"+name].Spec.PolicyName, "bindings follow their policies' names")
	}
}

// `kubectl apply -k daemonset/` creates podorder-system with the Pod Security level the DaemonSet
// needs, and runs on every Kubernetes the chart does; the components add the mutating policies.
func TestTheShippedKustomizationCreatesItsNamespaceAndTheComponentsAddThe136Policies(t *testing.T) {
	objs := build(t, "../../daemonset")
	ns, ok := objs["Namespace/podorder-system"]
	require.True(t, ok)
	assert.Equal(t, "privileged", ns.Metadata.Labels["pod-security.kubernetes.io/enforce"])
	assert.Equal(t, "system:serviceaccount:podorder-system:podorder", guardedUser(t, objs, ""))
	assert.NotContains(t, strings.Join(keys(objs), " "), "MutatingAdmissionPolicy")

	withComponents := kustomize(t, "resources: [%s]\ncomponents: [%s/components/shutdown-order, %s/components/readiness-gate]\n")
	for _, key := range []string{"MutatingAdmissionPolicy/podorder-prestop", "MutatingAdmissionPolicyBinding/podorder-prestop",
		"MutatingAdmissionPolicy/podorder-readiness-gate", "MutatingAdmissionPolicyBinding/podorder-readiness-gate"} {
		o, ok := withComponents[key]
		require.True(t, ok, key)
		assert.Equal(t, "podorder", o.Metadata.Labels["app.kubernetes.io/part-of"], "%s carries the recommended labels", key)
	}
	assert.Len(t, withComponents, len(objs)+4)

	shipped136 := build(t, "../../daemonset/kubernetes-1.36")
	assert.ElementsMatch(t, keys(withComponents), keys(shipped136), "daemonset/kubernetes-1.36 is daemonset/ with both components")
	for key, o := range shipped136 {
		assert.Equal(t, "podorder", o.Metadata.Labels["app.kubernetes.io/part-of"], "%s carries the recommended labels", key)
	}
}

func keys(objs map[string]object) []string {
	var ks []string
	for k := range objs {
		ks = append(ks, k)
	}
	return ks
}

func TestTheValidationWarnComponentRelaxesOnlyTheValidationOfKeys(t *testing.T) {
	objs := kustomize(t, "resources: [%s]\ncomponents: [%s/components/validation-warn]\n")
	for key, o := range objs {
		if !strings.HasPrefix(key, "ValidatingAdmissionPolicyBinding/") {
			continue
		}
		want := []string{"Warn", "Audit"}
		if key == "ValidatingAdmissionPolicyBinding/podorder-status-writes" {
			want = []string{"Deny"}
		}
		assert.Equal(t, want, o.Spec.ValidationActions, key)
	}
}

// componentDaemonSet builds the base with one component (and extra kustomization lines) and
// returns its DaemonSet.
func componentDaemonSet(t *testing.T, component, extra string) *appsv1.DaemonSet {
	t.Helper()
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, filepath.Join(repo, "daemonset"))
	require.NoError(t, err)
	body := "resources: [" + rel + "/base]\ncomponents: [" + rel + "/components/" + component + "]\n" + extra
	require.NoError(t, os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(body), 0o644))
	out, err := exec.Command(Kubectl(t), "kustomize", overlay).CombinedOutput()
	require.NoError(t, err, "kubectl kustomize: %s", out)
	var ds *appsv1.DaemonSet
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.Contains(doc, "kind: DaemonSet\n") {
			ds = &appsv1.DaemonSet{}
			require.NoError(t, yaml.Unmarshal([]byte(doc), ds))
		}
	}
	require.NotNil(t, ds, "the build has a DaemonSet")
	return ds
}

func TestTheEnableNRIComponentAddsTheSameInitContainer(t *testing.T) {
	pod := componentDaemonSet(t, "enable-nri", "images: [{name: registry.local/podorder/podorder, newTag: v9}]\n").Spec.Template.Spec
	assertEnablesNRI(t, pod, "/etc/containerd", "enable-nri", "--config=/host/etc/containerd/config.toml")
	assert.Equal(t, "registry.local/podorder/podorder:v9", pod.InitContainers[0].Image, "the overlay's image reaches the init container too")
	chart := renderDaemonSet(t, "nri.patchConfig.enabled=true").Spec.Template.Spec.InitContainers[0]
	assert.Equal(t, chart.SecurityContext, pod.InitContainers[0].SecurityContext, "the chart's and the component's init containers hold the same rights")
	assert.Equal(t, chart.Resources, pod.InitContainers[0].Resources)
}

func TestTheFileReadinessComponentGrantsSysPtrace(t *testing.T) {
	ds := componentDaemonSet(t, "file-readiness", "")
	var caps []string
	for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
		caps = append(caps, string(c))
	}
	assert.Equal(t, []string{"SYS_ADMIN", "KILL", "SYS_PTRACE"}, caps)
}
