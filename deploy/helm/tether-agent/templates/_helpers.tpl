{{/*
Expand the name of the chart.
*/}}
{{- define "tether-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "tether-agent.fullname" -}}
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
{{- define "tether-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "tether-agent.labels" -}}
helm.sh/chart: {{ include "tether-agent.chart" . }}
{{ include "tether-agent.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "tether-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "tether-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The annotations of every object: the hub's cluster ID, if given, and
"extra" annotations; empty when there are none.
Call with (dict "root" . ["extra" ANNOTATIONS]).
*/}}
{{- define "tether-agent.annotations" -}}
{{- $a := deepCopy (get . "extra" | default dict) }}
{{- with .root.Values.clusterID }}
{{- $_ := set $a "tether.dev/cluster-id" . }}
{{- end }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
The Secret that holds the join token, and the Secret the agent keeps its key in.
*/}}
{{- define "tether-agent.joinTokenSecret" -}}
{{- .Values.joinToken.existingSecret | default (printf "%s-join-token" (include "tether-agent.fullname" .)) }}
{{- end }}

{{- define "tether-agent.stateSecret" -}}
{{- printf "%s-state" (include "tether-agent.fullname" .) }}
{{- end }}

{{/*
The CA bundles as the agent reads them: white space trimmed, one final
newline; empty when not given.
*/}}
{{- define "tether-agent.hubCA" -}}
{{- with trim .Values.hub.ca }}{{ printf "%s\n" . }}{{ end }}
{{- end }}

{{- define "tether-agent.proxyCA" -}}
{{- with trim .Values.proxy.caBundle }}{{ printf "%s\n" . }}{{ end }}
{{- end }}

{{/*
Refuse values the agent could not run with.
*/}}
{{- define "tether-agent.validate" -}}
{{- if not (hasPrefix "https://" (required "hub.url is required: the hub's URL, https://HOST[:PORT]" .Values.hub.url)) }}
{{- fail (printf "hub.url %q must be https://HOST[:PORT]" .Values.hub.url) }}
{{- end }}
{{- if not (has .Values.mode (list "kubernetes-rbac" "hub-rbac")) }}
{{- fail (printf "mode %q: want kubernetes-rbac or hub-rbac" .Values.mode) }}
{{- end }}
{{- if and .Values.joinToken.existingSecret .Values.joinToken.value }}
{{- fail "set joinToken.existingSecret or joinToken.value, not both" }}
{{- end }}
{{- with .Values.proxy.httpsProxy }}
{{- if not (or (hasPrefix "http://" .) (hasPrefix "https://" .)) }}
{{- fail (printf "proxy.httpsProxy %q must be an http:// or https:// URL" .) }}
{{- end }}
{{- end }}
{{- end }}
