{{/* Names, labels and the settings the chart derives from values. */}}

{{- define "learnosity-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "learnosity-connector.fullname" -}}
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

{{- define "learnosity-connector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "learnosity-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "learnosity-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "learnosity-connector.labels" -}}
helm.sh/chart: {{ include "learnosity-connector.chart" . }}
{{ include "learnosity-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: connector
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "learnosity-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "learnosity-connector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "learnosity-connector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the pod mounts what; the connector reads secret files from secretsDir. */}}
{{- define "learnosity-connector.secretsDir" -}}/etc/learnosity-connector/secrets{{- end }}
{{- define "learnosity-connector.kafkaCaDir" -}}/etc/learnosity-connector/kafka-ca{{- end }}
{{- define "learnosity-connector.kafkaClientDir" -}}/etc/learnosity-connector/kafka-client{{- end }}

{{/* Seconds the kubelet waits after SIGTERM: above the connector's own shutdown bound. */}}
{{- define "learnosity-connector.gracePeriod" -}}
{{- $shutdown := .Values.shutdownTimeoutSeconds | float64 | ceil | int }}
{{- $grace := .Values.terminationGracePeriodSeconds | default (add $shutdown 10) | int }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed shutdownTimeoutSeconds (%d): the kubelet would kill the connector mid-transaction" $grace $shutdown) }}
{{- end }}
{{- $grace }}
{{- end }}

{{/*
What the connector cannot start without, and settings that contradict each other: one
line naming every missing value, so `helm install` fails instead of a crash-looping pod.
values.schema.json rejects the same values first; this holds with --skip-schema-validation
too. Included by the Deployment, which every install renders.
*/}}
{{- define "learnosity-connector.validate" -}}
{{- $v := .Values }}
{{- $missing := list }}
{{- if not $v.learnosity.consumerKey }}
{{- $missing = append $missing "learnosity.consumerKey" }}
{{- end }}
{{- if not (or $v.learnosity.consumerSecret $v.learnosity.existingSecret) }}
{{- $missing = append $missing "learnosity.consumerSecret or learnosity.existingSecret" }}
{{- end }}
{{- if not $v.kafka.bootstrapServers }}
{{- $missing = append $missing "kafka.bootstrapServers" }}
{{- end }}
{{- if and $v.kafka.sasl.enabled (not (or $v.kafka.sasl.password $v.kafka.sasl.existingSecret)) }}
{{- $missing = append $missing "kafka.sasl.password or kafka.sasl.existingSecret (kafka.sasl.enabled is true)" }}
{{- end }}
{{- if and (ne (default "registry" $v.encoding) "single-object") (not $v.schemaRegistry.url) }}
{{- $missing = append $missing "schemaRegistry.url (or encoding=single-object for Avro without a registry)" }}
{{- end }}
{{- if $missing }}
{{- fail (printf "missing required values: %s" (join "; " $missing)) }}
{{- end }}
{{- if and (eq (default "registry" $v.encoding) "single-object") $v.schemaRegistry.url }}
{{- fail "encoding is single-object but schemaRegistry.url is set: the connector would use the registry; unset one of them" }}
{{- end }}
{{- with $v.schemaRegistry }}
{{- if and .existingSecret (not (or .passwordKey .bearerTokenKey)) }}
{{- fail "schemaRegistry.existingSecret is set but neither schemaRegistry.passwordKey nor schemaRegistry.bearerTokenKey names a key in it" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "learnosity-connector.securityProtocol" -}}
{{- $k := .Values.kafka }}
{{- if and $k.sasl.enabled $k.tls.enabled }}SASL_SSL
{{- else if $k.sasl.enabled }}SASL_PLAINTEXT
{{- else if $k.tls.enabled }}SSL
{{- else }}PLAINTEXT
{{- end }}
{{- end }}

{{/*
A value as an env var's text. Numbers from a values file arrive as float64, which
toString writes as 3.3554432e+07: a whole number is written whole.
*/}}
{{- define "learnosity-connector.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- printf "%.0f" . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
The non-secret settings as env var name -> value (the ConfigMap's data). Empty values
are left out so the connector's defaults apply. Secrets never appear here.
*/}}
{{- define "learnosity-connector.settings" -}}
{{- $v := .Values }}
{{- $s := dict }}
{{- $typed := dict
  "LEARNOSITY_CONSUMER_KEY" $v.learnosity.consumerKey
  "LEARNOSITY_BASE_URL" $v.learnosity.baseUrl
  "LEARNOSITY_DOMAIN" $v.learnosity.domain
  "LEARNOSITY_START_FROM" $v.learnosity.startFrom
  "KAFKA_BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "KAFKA_TOPIC" $v.kafka.topic
  "KAFKA_DLQ_TOPIC" $v.kafka.dlqTopic
  "KAFKA_DELIVERY" $v.kafka.delivery
  "SCHEMA_REGISTRY_URL" $v.schemaRegistry.url
  "SCHEMA_REGISTRY_USERNAME" $v.schemaRegistry.username
  "CONNECTOR_NAME" $v.connectorName
  "LOG_LEVEL" $v.logLevel
  "LOG_FORMAT" $v.logFormat
}}
{{- range $name, $value := $typed }}
{{- if $value }}{{ $_ := set $s $name (toString $value) }}{{ end }}
{{- end }}
{{- $_ := set $s "HTTP_PORT" (include "learnosity-connector.envValue" $v.httpPort) }}
{{- $_ := set $s "SHUTDOWN_TIMEOUT_SECONDS" (include "learnosity-connector.envValue" $v.shutdownTimeoutSeconds) }}
{{- $_ := set $s "KAFKA_SECURITY_PROTOCOL" (include "learnosity-connector.securityProtocol" .) }}
{{- if $v.kafka.sasl.enabled }}
{{- $_ := set $s "KAFKA_SASL_MECHANISM" $v.kafka.sasl.mechanism }}
{{- $_ := set $s "KAFKA_SASL_USERNAME" $v.kafka.sasl.username }}
{{- end }}
{{- if and $v.kafka.tls.enabled $v.kafka.tls.ca.existingSecret }}
{{- $_ := set $s "KAFKA_SSL_CA_LOCATION" (printf "%s/%s" (include "learnosity-connector.kafkaCaDir" .) $v.kafka.tls.ca.key) }}
{{- end }}
{{- if and $v.kafka.tls.enabled $v.kafka.tls.clientCert.existingSecret }}
{{- $dir := include "learnosity-connector.kafkaClientDir" . }}
{{- $_ := set $s "LIBRDKAFKA_SSL_CERTIFICATE_LOCATION" (printf "%s/%s" $dir $v.kafka.tls.clientCert.certKey) }}
{{- $_ := set $s "LIBRDKAFKA_SSL_KEY_LOCATION" (printf "%s/%s" $dir $v.kafka.tls.clientCert.keyKey) }}
{{- end }}
{{- /* linger.ms -> LIBRDKAFKA_LINGER_MS; a literal "_" is written "__" (the connector's rule) */}}
{{- range $prop, $value := $v.kafka.librdkafka }}
{{- $_ := set $s (printf "LIBRDKAFKA_%s" ($prop | replace "_" "__" | replace "." "_" | upper)) (include "learnosity-connector.envValue" $value) }}
{{- end }}
{{- range $name, $value := $v.settings }}
{{- $_ := set $s $name (include "learnosity-connector.envValue" $value) }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/* Secret values the chart itself stores (file name = env var name). */}}
{{- define "learnosity-connector.secretData" -}}
{{- $v := .Values }}
{{- $d := dict }}
{{- if not $v.learnosity.existingSecret }}
{{- $_ := set $d "LEARNOSITY_CONSUMER_SECRET" $v.learnosity.consumerSecret }}
{{- end }}
{{- if and $v.kafka.sasl.enabled (not $v.kafka.sasl.existingSecret) }}
{{- $_ := set $d "KAFKA_SASL_PASSWORD" $v.kafka.sasl.password }}
{{- end }}
{{- if and $v.schemaRegistry.password (not $v.schemaRegistry.existingSecret) }}
{{- $_ := set $d "SCHEMA_REGISTRY_PASSWORD" $v.schemaRegistry.password }}
{{- end }}
{{- if and $v.schemaRegistry.bearerToken (not $v.schemaRegistry.existingSecret) }}
{{- $_ := set $d "SCHEMA_REGISTRY_BEARER_TOKEN" $v.schemaRegistry.bearerToken }}
{{- end }}
{{- toYaml $d }}
{{- end }}
