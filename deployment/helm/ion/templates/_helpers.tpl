{{/* Name of the release's objects: the release name if it says "ion", else <release>-ion. */}}
{{- define "ion.fullname" -}}
{{- if contains "ion" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-ion" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ion.management.name" -}}{{ include "ion.fullname" . }}-management{{- end -}}
{{- define "ion.serverSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-management-tls" (include "ion.fullname" .)) -}}
{{- end -}}
{{- define "ion.clientSecret" -}}{{ include "ion.fullname" . }}-client-tls{{- end -}}

{{- define "ion.labels" -}}
app.kubernetes.io/part-of: ion
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{- define "ion.management.selector" -}}
app.kubernetes.io/name: ion-management
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{/* <registry>/<name>:<tag> of one of Ion's images: (list . "management") */}}
{{- define "ion.image" -}}
{{- $root := index . 0 -}}
{{- $name := index $root.Values.image (index . 1) -}}
{{- $tag := $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if $root.Values.image.registry -}}
{{- printf "%s/%s:%s" $root.Values.image.registry $name $tag -}}
{{- else -}}
{{- printf "%s:%s" $name $tag -}}
{{- end -}}
{{- end -}}

{{/* Names the server certificate is valid for: the Service's and the user's. */}}
{{- define "ion.tlsHosts" -}}
{{- $svc := include "ion.management.name" . -}}
{{- $ns := .Release.Namespace -}}
{{- $hosts := list "localhost" "127.0.0.1" $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) -}}
{{- concat $hosts .Values.tls.hosts | uniq | toJson -}}
{{- end -}}

{{- define "ion.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "ion.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "ion.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "ion.validate" -}}
{{- if and .Values.tls.existingSecret .Values.tls.certManager.enabled -}}
{{- fail "tls: set either tls.existingSecret or tls.certManager.enabled, not both" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name is required when tls.certManager.enabled is true" -}}
{{- end -}}
{{- if and .Values.tls.certManager.enabled (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) -}}
{{- fail "tls.certManager.enabled is true but this cluster has no cert-manager.io/v1 API; install cert-manager or use tls.existingSecret" -}}
{{- end -}}
{{- if and .Values.credentials.workloadIdentity.enabled (not .Values.credentials.workloadIdentity.managementClientId) -}}
{{- fail "credentials.workloadIdentity.managementClientId is required when workload identity is enabled" -}}
{{- end -}}
{{- if and .Values.credentials.workloadIdentity.enabled (not .Values.dispatchers.sharedServiceAccount) -}}
{{- fail "workload identity needs dispatchers.sharedServiceAccount=true: federated credentials name one service account" -}}
{{- end -}}
{{- end -}}
