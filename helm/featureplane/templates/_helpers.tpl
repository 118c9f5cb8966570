{{/* Chart name. */}}
{{- define "featureplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (63 chars, the DNS label limit). */}}
{{- define "featureplane.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "featureplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "featureplane.labels" -}}
helm.sh/chart: {{ include "featureplane.chart" . }}
{{ include "featureplane.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: featureplane
{{- end }}

{{/* Selector labels. */}}
{{- define "featureplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "featureplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "featureplane.gatewaySelectorLabels" -}}
{{ include "featureplane.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "featureplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "featureplane.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "featureplane.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* FEATUREPLANE_* environment shared by the gateway and the CronJobs. */}}
{{- define "featureplane.env" -}}
- name: FEATUREPLANE_ENVIRONMENT
  value: production
# The root filesystem is read-only: HOME on the /tmp emptyDir, no Feast usage file.
- name: HOME
  value: /tmp
- name: FEAST_USAGE
  value: "False"
- name: FEATUREPLANE_TOKEN_PEPPER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.tokenPepper.name }}
      key: {{ .Values.secrets.tokenPepper.key }}
- name: FEATUREPLANE_REGISTRY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.existingSecret }}
      key: {{ .Values.registry.secretKey }}
- name: FEATUREPLANE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
- name: FEATUREPLANE_REDIS_TYPE
  value: {{ ternary "redis_cluster" "redis" (eq .Values.redis.mode "cluster") }}
- name: FEATUREPLANE_REDIS_TIMEOUT_SECONDS
  value: {{ .Values.redis.timeoutSeconds | quote }}
- name: FEATUREPLANE_TENANTS_DIR
  value: {{ .Values.config.tenantsDir | quote }}
- name: FEATUREPLANE_FEATURE_REPO_DIR
  value: {{ .Values.config.featureRepoDir | quote }}
- name: FEATUREPLANE_REGISTRY_REFRESH_SECONDS
  value: {{ .Values.config.registryRefreshSeconds | quote }}
- name: FEATUREPLANE_QUOTAS_ENABLED
  value: {{ .Values.config.quotasEnabled | quote }}
- name: FEATUREPLANE_QUOTA_LEASE_SECONDS
  value: {{ .Values.config.quotaLeaseSeconds | quote }}
- name: FEATUREPLANE_KUBERNETES_AUTH
  value: {{ .Values.config.kubernetesAuth | quote }}
- name: FEATUREPLANE_KUBERNETES_AUDIENCES
  value: {{ .Values.config.kubernetesAudiences | toJson | quote }}
- name: FEATUREPLANE_ACCESS_LOG
  value: {{ .Values.config.accessLog | quote }}
- name: FEATUREPLANE_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: FEATUREPLANE_LOG_JSON
  value: {{ .Values.config.logJson | quote }}
- name: FEATUREPLANE_SERVICE_NAME
  value: {{ .Values.config.serviceName | quote }}
{{- with .Values.config.otlpEndpoint }}
- name: FEATUREPLANE_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if has .name (list "FEATUREPLANE_ENVIRONMENT" "FEATUREPLANE_TOKEN_PEPPER" "FEATUREPLANE_REGISTRY" "FEATUREPLANE_REDIS_URL") }}
{{- fail (printf "extraEnv must not set %s: the chart sets it (production; secrets only through the Secret references in secrets/registry/redis)" .name) }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
