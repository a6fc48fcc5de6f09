{{/* Labels every object carries. */}}
{{- define "podorder.labels" -}}
app.kubernetes.io/name: podorder
app.kubernetes.io/part-of: podorder
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The daemon's service account, as the API server names it in requests. */}}
{{- define "podorder.user" -}}
system:serviceaccount:{{ .Release.Namespace }}:podorder
{{- end }}
