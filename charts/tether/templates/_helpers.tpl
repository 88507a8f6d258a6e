{{/* Names, labels and computed values shared by the templates. */}}

{{- define "tether.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tether.injectorName" -}}
{{- printf "%s-injector" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tether.jaegerName" -}}
{{- printf "%s-jaeger" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tether.policyReaderName" -}}
{{- printf "%s-policy-reader" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tether.tlsSecretName" -}}
{{- printf "%s-tls" (include "tether.injectorName" .) -}}
{{- end -}}

{{/* Labels for objects with a selector: the selector adds name and instance. */}}
{{- define "tether.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tether
{{- end -}}

{{- define "tether.labels" -}}
{{ include "tether.baseLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tether.injectorSelector" -}}
app.kubernetes.io/name: tether-injector
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tether.jaegerSelector" -}}
app.kubernetes.io/name: tether-jaeger
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tether.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* native on clusters with native sidecars (1.29+), legacy before; sidecar.mode overrides. */}}
{{- define "tether.sidecarMode" -}}
{{- if eq .Values.sidecar.mode "auto" -}}
{{- if semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version -}}native{{- else -}}legacy{{- end -}}
{{- else -}}
{{- .Values.sidecar.mode -}}
{{- end -}}
{{- end -}}

{{- define "tether.otlpEndpoint" -}}
{{- if .Values.tracing.otlpEndpoint -}}
{{- .Values.tracing.otlpEndpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://%s.%s.svc.%s:4318" (include "tether.jaegerName" .) .Release.Namespace .Values.sidecar.clusterDomain -}}
{{- end -}}
{{- end -}}

{{/* Namespaces no webhook entry ever sees: the control plane's and Tether's own. */}}
{{- define "tether.excludedNamespaces" -}}
{{- $ns := list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace -}}
{{- toYaml (uniq (concat $ns .Values.webhook.excludeNamespaces)) -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for the chart's own containers. */}}
{{- define "tether.restrictedSecurityContext" -}}
runAsNonRoot: true
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
