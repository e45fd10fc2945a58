{{/* The chart name, or nameOverride. */}}
{{- define "claimguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name
when it already holds the chart name ("claimguard"), else <release>-<chart>.
Suffixed names (-webhook, -metrics) stay within 63 characters.
*/}}
{{- define "claimguard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "claimguard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels of every object. */}}
{{- define "claimguard.labels" -}}
helm.sh/chart: {{ include "claimguard.chart" . }}
{{ include "claimguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: claimguard
{{- end }}

{{/* The labels that select the manager's pods (Services, PDB, spreading). */}}
{{- define "claimguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "claimguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "claimguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "claimguard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "claimguard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Names the manager's flags must agree with. */}}
{{- define "claimguard.webhookServiceName" -}}
{{- printf "%s-webhook" (include "claimguard.fullname" .) }}
{{- end }}
{{- define "claimguard.webhookCertSecret" -}}
{{- printf "%s-webhook-cert" (include "claimguard.fullname" .) }}
{{- end }}
{{- define "claimguard.webhookTLSSecret" -}}
{{- printf "%s-webhook-tls" (include "claimguard.fullname" .) }}
{{- end }}
{{- define "claimguard.validatingWebhookName" -}}
{{- printf "%s-validating-webhook-configuration" (include "claimguard.fullname" .) }}
{{- end }}
{{- define "claimguard.mutatingWebhookName" -}}
{{- printf "%s-mutating-webhook-configuration" (include "claimguard.fullname" .) }}
{{- end }}
{{- define "claimguard.certificateName" -}}
{{- printf "%s-webhook" (include "claimguard.fullname" .) }}
{{- end }}

{{/*
The rules of a kind (ClusterRole or Role) in files/role.yaml, the copy of
config/rbac/role.yaml that `make manifests` writes from controller-gen's
markers: the chart grants exactly what the code declares it needs.
*/}}
{{- define "claimguard.generatedRules" -}}
{{- $kind := .kind }}
{{- $found := false }}
{{- range $doc := regexSplit "(?m)^---\\s*$" (.root.Files.Get "files/role.yaml") -1 }}
{{- $obj := fromYaml $doc }}
{{- if and $obj (eq (get $obj "kind") $kind) }}
{{- $found = true }}
{{- toYaml (get $obj "rules") }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- fail (printf "files/role.yaml has no %s: run make manifests" $kind) }}
{{- end }}
{{- end }}

{{/*
The namespaceSelector of the Ingress webhooks (config/webhook): only namespaces
claimguard guards, never exempt ones, kube-system or the release namespace, so
an outage of claimguard blocks Ingress changes only where a policy guards them.
*/}}
{{- define "claimguard.ingressNamespaceSelector" -}}
matchExpressions:
- key: auth.claimguard.dev/guarded
  operator: In
  values: ["true"]
- key: auth.claimguard.dev/exempt
  operator: NotIn
  values: ["true"]
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: [kube-system, {{ .Release.Namespace | quote }}]
{{- end }}

{{/* The webhook clientConfig of a path. */}}
{{- define "claimguard.webhookClientConfig" -}}
service:
  name: {{ include "claimguard.webhookServiceName" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- end }}

{{/* The cert-manager CA injection annotation of the webhook configurations. */}}
{{- define "claimguard.webhookAnnotations" -}}
cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "claimguard.certificateName" .) }}
{{- end }}
