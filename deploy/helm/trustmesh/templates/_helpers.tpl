{{/*
Names are fixed, not derived from the release: the server, the injector and the
agents find each other by them (trustmesh-server.NAMESPACE.svc, the webhook
configurations trustmesh-validator and trustmesh-injector, the ConfigMap
trustmesh-bundle), and a cluster holds one mesh.
*/}}

{{/* trustmesh.labels NAME: the labels of every object of component NAME. */}}
{{- define "trustmesh.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: trustmesh
{{- end }}

{{/* trustmesh.selector NAME: the pod selector of component NAME. */}}
{{- define "trustmesh.selector" -}}
app.kubernetes.io/name: {{ . }}
{{- end }}

{{/* trustmesh.image: the trustmesh image reference. */}}
{{- define "trustmesh.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{/* trustmesh.check fails the rendering on values that cannot work. */}}
{{- define "trustmesh.check" -}}
{{- if not (regexMatch "^[a-z0-9._-]+$" .Values.trustDomain) -}}
{{- fail (printf "trustDomain %q: want a SPIFFE trust domain: lowercase letters, digits, '.', '-' and '_'" .Values.trustDomain) -}}
{{- end -}}
{{- $pg := .Values.server.store.postgresURL -}}
{{- if and (gt (int .Values.server.replicas) 1) (not $pg) -}}
{{- fail "server.replicas > 1 needs a shared store: set server.store.postgresURL and server.store.kekSecret" -}}
{{- end -}}
{{- if and $pg (not (hasPrefix "postgres://" $pg)) (not (hasPrefix "postgresql://" $pg)) -}}
{{- fail "server.store.postgresURL: want postgres://USER@HOST:PORT/DATABASE" -}}
{{- end -}}
{{- if and $pg (not .Values.server.store.kekSecret) -}}
{{- fail "server.store.postgresURL needs server.store.kekSecret: a Secret with key \"kek\" from `trustmesh kek generate`" -}}
{{- end -}}
{{- if and (not $pg) .Values.server.store.kekSecret -}}
{{- fail "server.store.kekSecret is only used with server.store.postgresURL" -}}
{{- end -}}
{{- end }}
