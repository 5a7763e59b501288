{{/*
Expand the name of the chart.
*/}}
{{- define "tether-hub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "tether-hub.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "tether-hub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "tether-hub.labels" -}}
helm.sh/chart: {{ include "tether-hub.chart" . }}
{{ include "tether-hub.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: the Deployment's, the Service's and the
PodDisruptionBudget's. The instance label keeps two releases in one
namespace apart.
*/}}
{{- define "tether-hub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether-hub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hub
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "tether-hub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether-hub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ConfigMap of the --oidc-issuers and --locations files; rendered only
when one of them is given.
*/}}
{{- define "tether-hub.configMapName" -}}
{{- printf "%s-config" (include "tether-hub.fullname" .) }}
{{- end }}

{{- define "tether-hub.hasConfig" -}}
{{- if or .Values.oidcIssuers .Values.locations }}true{{ end }}
{{- end }}

{{/*
The hub's public URL: url, else https://<ingress.host>.
*/}}
{{- define "tether-hub.url" -}}
{{- if .Values.url }}
{{- .Values.url }}
{{- else if and .Values.ingress.enabled .Values.ingress.host }}
{{- printf "https://%s" .Values.ingress.host }}
{{- end }}
{{- end }}

{{/*
The flags the chart sets itself; extraArgs may not repeat them.
*/}}
{{- define "tether-hub.managedFlags" -}}
listen data-dir tls-cert tls-key store replica peer-url url drain-delay drain-grace replica-lease heartbeat-interval offline-after oidc-issuers locations metrics-bind-address
{{- end }}

{{/*
Refuse values the hub could not run with, saying what to set.
*/}}
{{- define "tether-hub.validate" -}}
{{- $_ := required "store.existingSecret is required: the Secret whose key store.secretKey (default url) holds the PostgreSQL URL, postgres://USER:PASSWORD@HOST:5432/DB (see the chart's README)" .Values.store.existingSecret }}
{{- $_ = required "store.secretKey is required: the key of the PostgreSQL URL in store.existingSecret" .Values.store.secretKey }}
{{- $_ = required "identity.existingSecret is required: the Secret with the admin.token, hub.id, assertion.key and issuer.key that `tether hub init` writes (see the chart's README)" .Values.identity.existingSecret }}
{{- $_ = required "tls.existingSecret is required: the kubernetes.io/tls Secret of the hub's serving certificate (kubectl create secret tls NAME --cert hub/tls.crt --key hub/tls.key)" .Values.tls.existingSecret }}
{{- range $value, $name := dict "store.existingSecret" .Values.store.existingSecret "identity.existingSecret" .Values.identity.existingSecret "tls.existingSecret" .Values.tls.existingSecret }}
{{- /* Not repeated in the message: it may be a URL with a password. */}}
{{- if and $name (not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $name)) }}
{{- fail (printf "%s must be the name of a Secret (lower-case letters, digits, '-' and '.'), not its contents" $value) }}
{{- end }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- $_ = required "ingress.host is required with ingress.enabled: the hub's public host name" .Values.ingress.host }}
{{- end }}
{{- $url := required "url is required: the hub's public URL, https://HOST[:PORT], as agents and users reach it (or set ingress.enabled and ingress.host)" (include "tether-hub.url" .) }}
{{- if and $url (not (regexMatch "^https://[^/?#@\\s]+$" $url)) }}
{{- fail (printf "url %q must be https://HOST[:PORT]" $url) }}
{{- end }}
{{- $managed := splitList " " (include "tether-hub.managedFlags" .) }}
{{- range .Values.extraArgs }}
{{- $flag := regexReplaceAll "^--?([^=]*).*$" . "${1}" }}
{{- if has $flag $managed }}
{{- /* Name only the flag: the value may be a password. */}}
{{- if eq $flag "store" }}
{{- fail "extraArgs: --store: the PostgreSQL URL holds a password; the chart reads it from the Secret store.existingSecret" }}
{{- end }}
{{- fail (printf "extraArgs: --%s: the chart sets it itself (see values.yaml)" $flag) }}
{{- end }}
{{- end }}
{{- end }}
