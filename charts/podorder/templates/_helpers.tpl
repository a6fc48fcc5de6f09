{{/* The name of podorder's own objects. */}}
{{- define "podorder.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains "podorder" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-podorder" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/* The namespace of podorder's namespaced objects. */}}
{{- define "podorder.namespace" -}}
{{- .Values.namespace.name | default .Release.Namespace -}}
{{- end }}

{{/* Labels that select the DaemonSet's pods. */}}
{{- define "podorder.selectorLabels" -}}
app.kubernetes.io/name: podorder
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels every object carries, cluster-scoped ones included. */}}
{{- define "podorder.labels" -}}
{{ include "podorder.selectorLabels" . }}
app.kubernetes.io/part-of: podorder
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The image reference: repository@digest when a digest is given, else repository:tag. */}}
{{- define "podorder.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end }}

{{/* "true" when the MutatingAdmissionPolicies are installed (admission.mutating), else empty. */}}
{{- define "podorder.mutating" -}}
{{- $m := .Values.admission.mutating -}}
{{- if eq (toString $m) "auto" -}}
{{- if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy" }}true{{ end -}}
{{- else if $m -}}
true
{{- end -}}
{{- end }}

{{/* "true" when the Prometheus Operator's objects may be rendered (metrics.monitoringAPI), else empty. */}}
{{- define "podorder.monitoring" -}}
{{- $m := .Values.metrics.monitoringAPI -}}
{{- if eq (toString $m) "auto" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end -}}
{{- else if $m -}}
true
{{- end -}}
{{- end }}

{{/*
The objects of one of daemonset/'s policy files (files/, kept identical by a test), with the
release's labels, and the status guard's parameter set to the release's ServiceAccount.
*/}}
{{- define "podorder.policyFile" -}}
{{- $root := .root -}}
{{- $actions := .actions -}}
{{- range $doc := splitList "\n---\n" ($root.Files.Get .file) }}
{{- $obj := fromYaml $doc }}
{{- if $obj.kind }}
{{- $_ := set $obj.metadata "labels" (merge (include "podorder.labels" $root | fromYaml) ($obj.metadata.labels | default dict)) }}
{{- if and (eq $obj.kind "ValidatingAdmissionPolicyBinding") $actions }}
{{- $_ := set $obj.spec "validationActions" $actions }}
{{- end }}
{{- if and (eq $obj.kind "ValidatingAdmissionPolicyBinding") $obj.spec.paramRef }}
{{- $_ := set $obj.spec.paramRef "name" (include "podorder.fullname" $root) }}
{{- $_ := set $obj.spec.paramRef "namespace" (include "podorder.namespace" $root) }}
{{- end }}
---
{{ toYaml $obj }}
{{- end }}
{{- end }}
{{- end }}
