{{/* Names and labels shared by every template. */}}
{{- define "zot-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "zot-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "zot-operator.labels" -}}
{{ include "zot-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "zot-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "zot-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs in a namespace it watches: nothing more (no "*", no list of Secrets). */}}
{{- define "zot-operator.namespacedRules" -}}
- apiGroups: [zot-operator.io]
  resources: [zotclusters]
  verbs: [get, list, watch, patch]
- apiGroups: [zot-operator.io]
  resources: [zotclusters/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps, services, secrets]
  verbs: [get, create, patch]
# delete: a larger volume size recreates the StatefulSet, its pods and claims orphaned (volumes.py).
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, create, patch]
# Pods: read to see readiness, delete to restart members (the StatefulSet is OnDelete), patch to
# annotate each member with the list it routes by after a membership change made in place.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, delete, patch]
# Claims: read to compare each member's size with the spec's, patch to grow them.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
