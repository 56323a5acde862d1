{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "api-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "api-proxy.fullname" -}}
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

{{- define "api-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "api-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "api-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "api-proxy.labels" -}}
helm.sh/chart: {{ include "api-proxy.chart" . }}
{{ include "api-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: api-proxy
{{- end }}

{{- define "api-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "api-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: repository:tag, repository:tag@digest, or repository@digest.
The tag defaults to the appVersion; a digest pins the image whatever the tag says.
*/}}
{{- define "api-proxy.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- $digest := .Values.image.digest | toString }}
{{- if and $digest $tag }}
{{- printf "%s:%s@%s" .Values.image.repository $tag $digest }}
{{- else if $digest }}
{{- printf "%s@%s" .Values.image.repository $digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "api-proxy.upstreamSecretName" -}}
{{- printf "%s-upstream" (include "api-proxy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The status Lease, in the release namespace: one per release, so two releases never share a status writer. */}}
{{- define "api-proxy.leaseName" -}}
{{- printf "%s-status" (include "api-proxy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "api-proxy.clientKeysSecretName" -}}
{{- printf "%s-client-keys" (include "api-proxy.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* True ("true") when some upstream has an inline key, i.e. the chart creates the upstream Secret. */}}
{{- define "api-proxy.createsUpstreamSecret" -}}
{{- $any := false }}
{{- range $name, $u := .Values.upstreams }}
{{- if dig "apiKey" "value" "" $u }}{{ $any = true }}{{ end }}
{{- end }}
{{- if $any }}true{{ end }}
{{- end }}

{{/* Where an upstream's key file is mounted. */}}
{{- define "api-proxy.upstreamKeyDir" -}}
{{- printf "/var/run/secrets/api-proxy/upstreams/%s" . }}
{{- end }}

{{- define "api-proxy.upstreamCaDir" -}}
{{- printf "/var/run/secrets/api-proxy/upstream-ca/%s" . }}
{{- end }}

{{- define "api-proxy.redisPasswordFile" -}}
/var/run/secrets/api-proxy/redis/password
{{- end }}

{{- define "api-proxy.redisCaFile" -}}
/var/run/secrets/api-proxy/redis-ca/ca.crt
{{- end }}

{{- define "api-proxy.upstreamClientCertDir" -}}
{{- printf "/var/run/secrets/api-proxy/upstream-client-cert/%s" . }}
{{- end }}

{{- define "api-proxy.upstreamProxyDir" -}}
{{- printf "/var/run/secrets/api-proxy/upstream-proxy/%s" . }}
{{- end }}

{{- define "api-proxy.clientKeysDir" -}}
/var/run/secrets/api-proxy/client-keys
{{- end }}

{{/*
Namespaces the gateway watches, as RBAC sees them: a list of namespace names, or ["*"].
[] means the release namespace.
*/}}
{{- define "api-proxy.watchNamespaces" -}}
{{- $ns := .Values.kubernetes.namespaces | default (list .Release.Namespace) }}
{{- if has "*" $ns }}
{{- if gt (len $ns) 1 }}{{ fail "kubernetes.namespaces: \"*\" must be the only entry" }}{{ end }}
{{- end }}
{{- toJson (uniq $ns) }}
{{- end }}

{{/* Terminating pods: preStop pause + gateway drain delay + stream deadline + slack, in seconds. */}}
{{- define "api-proxy.terminationGracePeriodSeconds" -}}
{{- if gt (int .Values.lifecycle.terminationGracePeriodSeconds) 0 }}
{{- .Values.lifecycle.terminationGracePeriodSeconds }}
{{- else }}
{{- $pre := 0 }}
{{- if ne .Values.lifecycle.preStop "none" }}{{ $pre = int .Values.lifecycle.preStopSeconds }}{{ end }}
{{- $drain := divf (float64 .Values.config.shutdown.drainDelayMs) 1000.0 | ceil | int }}
{{- $streams := divf (float64 .Values.config.shutdown.timeoutMs) 1000.0 | ceil | int }}
{{- add $pre $drain $streams 10 }}
{{- end }}
{{- end }}

{{/* preStop mode after resolving "auto" against the cluster version. */}}
{{- define "api-proxy.preStopMode" -}}
{{- $mode := .Values.lifecycle.preStop }}
{{- if eq $mode "auto" }}
{{- if semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version }}sleep{{ else }}exec{{ end }}
{{- else }}
{{- $mode }}
{{- end }}
{{- end }}

{{/* The gateway's config file (snake_case), as a dict rendered to JSON by the ConfigMap. */}}
{{- define "api-proxy.config" -}}
{{- $upstreams := dict }}
{{- range $name, $u := .Values.upstreams }}
{{- $up := dict "url" (required (printf "upstreams.%s.url is required" $name) (get $u "url")) }}
{{- $existing := dig "apiKey" "existingSecret" "" $u }}
{{- $inline := dig "apiKey" "value" "" $u }}
{{- if and $existing $inline }}
{{- fail (printf "upstreams.%s.apiKey: set existingSecret or value, not both" $name) }}
{{- end }}
{{- if or $existing $inline }}
{{- $_ := set $up "api_key_file" (printf "%s/api-key" (include "api-proxy.upstreamKeyDir" $name)) }}
{{- end }}
{{- with (get $u "timeouts") }}
{{- $t := dict }}
{{- if hasKey . "connectMs" }}{{ $_ := set $t "connect_ms" (int .connectMs) }}{{ end }}
{{- if hasKey . "headersMs" }}{{ $_ := set $t "headers_ms" (int .headersMs) }}{{ end }}
{{- if hasKey . "idleMs" }}{{ $_ := set $t "idle_ms" (int .idleMs) }}{{ end }}
{{- $_ := set $up "timeouts" $t }}
{{- end }}
{{- if hasKey $u "maxConnections" }}{{ $_ := set $up "max_connections" (int $u.maxConnections) }}{{ end }}
{{- if hasKey $u "queueTimeoutMs" }}{{ $_ := set $up "queue_timeout_ms" (int $u.queueTimeoutMs) }}{{ end }}
{{- if hasKey $u "maxIdleConnections" }}{{ $_ := set $up "max_idle_connections" (int $u.maxIdleConnections) }}{{ end }}
{{- with (get $u "retry") }}
{{- $r := dict }}
{{- if hasKey . "attempts" }}{{ $_ := set $r "attempts" (int .attempts) }}{{ end }}
{{- with .backoff }}
{{- $b := dict }}
{{- if hasKey . "baseMs" }}{{ $_ := set $b "base_ms" (int .baseMs) }}{{ end }}
{{- if hasKey . "maxMs" }}{{ $_ := set $b "max_ms" (int .maxMs) }}{{ end }}
{{- $_ := set $r "backoff" $b }}
{{- end }}
{{- if hasKey . "conditions" }}
{{- $conditions := list }}
{{- range .conditions }}{{ $conditions = append $conditions (ternary . (int .) (kindIs "string" .)) }}{{ end }}
{{- $_ := set $r "conditions" $conditions }}
{{- end }}
{{- $_ := set $up "retry" $r }}
{{- end }}
{{- with (get $u "outlier") }}
{{- $o := dict }}
{{- if hasKey . "consecutiveFailures" }}{{ $_ := set $o "consecutive_failures" (int .consecutiveFailures) }}{{ end }}
{{- if hasKey . "ejectionMs" }}{{ $_ := set $o "ejection_ms" (int .ejectionMs) }}{{ end }}
{{- if hasKey . "maxEjectionMs" }}{{ $_ := set $o "max_ejection_ms" (int .maxEjectionMs) }}{{ end }}
{{- if hasKey . "maxEjectedPercent" }}{{ $_ := set $o "max_ejected_percent" (int .maxEjectedPercent) }}{{ end }}
{{- $_ := set $up "outlier" $o }}
{{- end }}
{{- with (get $u "tls") }}
{{- $tls := dict "insecure_skip_verify" (default false .insecureSkipVerify) }}
{{- if .caSecret }}{{ $_ := set $tls "ca_file" (printf "%s/ca.crt" (include "api-proxy.upstreamCaDir" $name)) }}{{ end }}
{{- if .servername }}{{ $_ := set $tls "servername" .servername }}{{ end }}
{{- if .clientCertSecret }}
{{- $_ := set $tls "client_cert_file" (printf "%s/tls.crt" (include "api-proxy.upstreamClientCertDir" $name)) }}
{{- $_ := set $tls "client_key_file" (printf "%s/tls.key" (include "api-proxy.upstreamClientCertDir" $name)) }}
{{- end }}
{{- $_ := set $up "tls" $tls }}
{{- end }}
{{- if hasKey $u "http2" }}{{ $_ := set $up "http2" $u.http2 }}{{ end }}
{{- with (get $u "proxy") }}
{{- if .url }}
{{- $proxy := dict "url" .url }}
{{- if .username }}{{ $_ := set $proxy "username" .username }}{{ end }}
{{- if .passwordSecret }}
{{- if not .username }}{{ fail (printf "upstreams.%s.proxy.passwordSecret needs proxy.username" $name) }}{{ end }}
{{- $_ := set $proxy "password_file" (printf "%s/password" (include "api-proxy.upstreamProxyDir" $name)) }}
{{- end }}
{{- $_ := set $up "proxy" $proxy }}
{{- else if or .username .passwordSecret }}
{{- fail (printf "upstreams.%s.proxy: username and passwordSecret need proxy.url" $name) }}
{{- end }}
{{- end }}
{{- $_ := set $upstreams $name $up }}
{{- end }}
{{- $cfg := dict "upstreams" $upstreams }}
{{- if .Values.clientKeys.keys }}
{{- $keys := list }}
{{- range $id, $_ := .Values.clientKeys.keys }}
{{- $keys = append $keys (dict "id" $id "key_file" (printf "%s/%s" (include "api-proxy.clientKeysDir" $) $id)) }}
{{- end }}
{{- $_ := set $cfg "client_keys" $keys }}
{{- end }}
{{- $_ := set $cfg "model_redirects" .Values.config.modelRedirects }}
{{- $_ := set $cfg "body_limit" (int64 .Values.config.bodyLimit) }}
{{- $_ := set $cfg "log_level" .Values.config.logLevel }}
{{- $_ := set $cfg "access_log" .Values.config.accessLog }}
{{- $_ := set $cfg "unknown_models" .Values.config.unknownModels }}
{{- $_ := set $cfg "answer_model" .Values.config.answerModel }}
{{- with .Values.config.routes }}{{ $_ := set $cfg "routes" . }}{{ end }}
{{- $_ := set $cfg "retry_budget_ms" (int .Values.config.retryBudgetMs) }}
{{- $_ := set $cfg "shutdown" (dict "drain_delay_ms" (int .Values.config.shutdown.drainDelayMs) "timeout_ms" (int .Values.config.shutdown.timeoutMs)) }}
{{- $_ := set $cfg "kubernetes" (dict "enabled" .Values.kubernetes.enabled "namespaces" .Values.kubernetes.namespaces "client_key_selector" .Values.kubernetes.clientKeySelector "lease_name" (include "api-proxy.leaseName" .)) }}
{{- $tracing := dict "enabled" .Values.tracing.enabled }}
{{- with .Values.tracing.endpoint }}{{ $_ := set $tracing "endpoint" . }}{{ end }}
{{- with .Values.tracing.protocol }}{{ $_ := set $tracing "protocol" . }}{{ end }}
{{- with .Values.tracing.serviceName }}{{ $_ := set $tracing "service_name" . }}{{ end }}
{{- with .Values.tracing.sampler }}{{ $_ := set $tracing "sampler" . }}{{ end }}
{{- if not (kindIs "invalid" .Values.tracing.samplerArg) }}{{ $_ := set $tracing "sampler_arg" (float64 .Values.tracing.samplerArg) }}{{ end }}
{{- if not (kindIs "invalid" .Values.tracing.maxQueueSize) }}{{ $_ := set $tracing "max_queue_size" (int .Values.tracing.maxQueueSize) }}{{ end }}
{{- $_ := set $cfg "tracing" $tracing }}
{{- $limits := dict "fail_open" .Values.rateLimits.failOpen }}
{{- with .Values.rateLimits.redis }}
{{- if .url }}
{{- $redis := dict "url" .url "timeout_ms" (int .timeoutMs) "key_prefix" .keyPrefix }}
{{- with .username }}{{ $_ := set $redis "username" . }}{{ end }}
{{- if .passwordSecret }}{{ $_ := set $redis "password_file" (include "api-proxy.redisPasswordFile" $) }}{{ end }}
{{- with .tls }}
{{- $tls := dict "insecure_skip_verify" (default false .insecureSkipVerify) }}
{{- if .caSecret }}{{ $_ := set $tls "ca_file" (include "api-proxy.redisCaFile" $) }}{{ end }}
{{- $_ := set $redis "tls" $tls }}
{{- end }}
{{- $_ := set $limits "redis" $redis }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "rate_limits" $limits }}
{{- $_ := set $cfg "usage" (dict "request_stream_usage" .Values.usage.requestStreamUsage) }}
{{- toPrettyJson $cfg }}
{{- end }}
