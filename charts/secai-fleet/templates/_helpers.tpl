{{/* Labels every object carries. */}}
{{- define "secai-fleet.labels" -}}
app.kubernetes.io/name: secai-fleet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component: include "secai-fleet.selector" (list . "operator"). */}}
{{- define "secai-fleet.selector" -}}
app.kubernetes.io/name: secai-fleet
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "secai-fleet.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{ if eq .Values.image.flavor "cuda" }}-cuda{{ end }}
{{- end -}}
{{- end -}}

{{/* The channel Service's in-cluster name, which the serving certificate carries. */}}
{{- define "secai-fleet.channelHost" -}}
secai-operator.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* Render monitoring objects: when asked, or on "auto" when the cluster serves the Prometheus Operator's API. */}}
{{- define "secai-fleet.monitoring" -}}
{{- $enabled := .Values.monitoring.enabled -}}
{{- if or (eq (toString $enabled) "true") (and (eq (toString $enabled) "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}
true
{{- end -}}
{{- end -}}

{{/* The restricted container security context (Pod Security Standard "restricted"). */}}
{{- define "secai-fleet.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
