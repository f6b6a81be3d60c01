{{/*
Names, labels and pod hardening shared by every object. infra/switchboard_infra/naming.py says the same
things for the Pulumi program; tests/unit/infra compares the two renderings.
*/}}

{{/* The prefix of every object name: the release name (at most 40 characters, like the Pulumi `name`). */}}
{{- define "switchboard.fullname" -}}
{{- if gt (len .Release.Name) 40 -}}
{{- fail "the release name must be at most 40 characters, so that derived object names stay under 63" -}}
{{- end -}}
{{- .Release.Name -}}
{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "api"). */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: switchboard
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels; call with (dict "root" $ "component" "api"). */}}
{{- define "switchboard.labels" -}}
{{ include "switchboard.selectorLabels" . }}
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Object metadata; call with (dict "root" $ "name" "switchboard-api" "component" "api"). */}}
{{- define "switchboard.metadata" -}}
name: {{ .name }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "switchboard.labels" . | nindent 2 }}
{{- end -}}

{{- define "switchboard.secretName" -}}
{{ include "switchboard.fullname" . }}-secrets
{{- end -}}

{{- define "switchboard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Selects the pods of the seven Switchboard services (not NATS). */}}
{{- define "switchboard.servicesSelector" -}}
matchLabels:
  app.kubernetes.io/name: switchboard
  app.kubernetes.io/instance: {{ .Release.Name }}
matchExpressions:
- key: app.kubernetes.io/component
  operator: In
  values: [api, media, routing, ivr, contacts, recording, reporting]
{{- end -}}

{{/* Pod security context; call with the uid (10001 for Switchboard's image, 1000 for NATS's). */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: the "restricted" Pod Security Standard. */}}
{{- define "switchboard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
A service's password on the bundled NATS, derived from natsToken and the service's name (the same in
infra/switchboard_infra/natsusers.py); call with (dict "root" $ "service" "api").
*/}}
{{- define "switchboard.natsPassword" -}}
{{ printf "nats-user|%s|%s" .service .root.Values.natsToken | sha256sum }}
{{- end -}}

{{/* A service's URL on the bundled NATS, as its own user; call with (dict "root" $ "service" "api"). */}}
{{- define "switchboard.internalNatsUrl" -}}
nats://{{ .service }}:{{ include "switchboard.natsPassword" . }}@{{ include "switchboard.fullname" .root }}-nats.{{ .root.Release.Namespace }}.svc:4222
{{- end -}}

{{/* The Secret's key holding a service's NATS URL; call with (dict "root" $ "service" "api"). */}}
{{- define "switchboard.natsUrlKey" -}}
{{ if .root.Values.natsUrl }}SB_NATS_URL{{ else }}SB_NATS_URL_{{ upper .service }}{{ end }}
{{- end -}}

{{/* "true" when the services use an external NATS (natsUrl, or natsUrls per service): no bundled NATS. */}}
{{- define "switchboard.externalNats" -}}
{{ if or .Values.natsUrl .Values.natsUrls }}true{{ end }}
{{- end -}}

{{/*
Checks that Helm's values schema cannot express (they depend on each other); the Pulumi program's
parse_config gives the same messages.
*/}}
{{- define "switchboard.validate" -}}
{{- if not .Values.databaseUrl -}}
{{- fail "databaseUrl: is required (the application role's URL, e.g. postgresql://sb_app:PASSWORD@db.example.internal:5432/switchboard)" -}}
{{- end -}}
{{- if and .Values.migrations.enabled (not .Values.databaseAdminUrl) -}}
{{- fail "databaseAdminUrl: is required (the table owner's URL for migrations; or set migrations.enabled to false and migrate yourself)" -}}
{{- end -}}
{{- if lt (len .Values.tokenSecret) 32 -}}
{{- fail "tokenSecret: is required, at least 32 characters (signs agent and widget tokens)" -}}
{{- end -}}
{{- if and .Values.natsUrl .Values.natsUrls -}}
{{- fail "natsUrls: give either natsUrl (one URL for every service) or natsUrls (one per service), not both" -}}
{{- end -}}
{{- if .Values.natsUrls -}}
{{- $missing := list -}}
{{- range $service, $_ := .Values.services -}}
{{- if not (get $.Values.natsUrls $service) -}}
{{- $missing = append $missing $service -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "natsUrls: every service needs its own URL, or leave natsUrls empty; missing: %s" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if .Values.natsPasswordHashes -}}
{{- if include "switchboard.externalNats" . -}}
{{- fail "natsPasswordHashes: only for the bundled NATS; create your own NATS's users yourself (--nats-conf)" -}}
{{- end -}}
{{- $missing := list -}}
{{- range $service, $_ := .Values.services -}}
{{- if not (get $.Values.natsPasswordHashes $service) -}}
{{- $missing = append $missing $service -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "natsPasswordHashes: every service needs its hash, or leave natsPasswordHashes empty; missing: %s" (join ", " $missing)) -}}
{{- end -}}
{{- end -}}
{{- if and (include "switchboard.externalNats" .) .Values.natsToken -}}
{{- fail "natsToken: only for the bundled NATS; with natsUrl or natsUrls, put credentials in the URLs" -}}
{{- end -}}
{{- if and (not (include "switchboard.externalNats" .)) (lt (len .Values.natsToken) 16) -}}
{{- fail "natsToken: is required (at least 16 characters) for the bundled NATS; or set natsUrl or natsUrls to use an external NATS" -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- if lt (int $svc.autoscaling.maxReplicas) (int $svc.autoscaling.minReplicas) -}}
{{- fail (printf "services.%s.autoscaling: maxReplicas is below minReplicas" $name) -}}
{{- end -}}
{{- end -}}
{{- if lt (int .Values.sip.rtpPortEnd) (int .Values.sip.rtpPortStart) -}}
{{- fail "sip: rtpPortEnd is below rtpPortStart" -}}
{{- end -}}
{{- end -}}

{{/*
Run by the api pods' init container, with the same meaning of SB_DATABASE_ADMIN_URL as `switchboard up`:
create the database and the application role named by SB_DATABASE_URL if missing, then apply pending
migrations as the admin and grant the role its rights. Safe from many pods at once (an advisory lock).
Same text as MIGRATE_SCRIPT in infra/switchboard_infra/workloads.py.
*/}}
{{- define "switchboard.migrateScript" -}}
import asyncio, os
from urllib.parse import unquote, urlsplit
from services.kernel import db
app = urlsplit(os.environ['SB_DATABASE_URL'])
admin = urlsplit(os.environ['SB_DATABASE_ADMIN_URL'])
database, role = app.path.lstrip('/'), unquote(app.username or '')
asyncio.run(db.bootstrap(admin.geturl(), database=database, app_role=role, app_password=unquote(app.password or '')))
print('migrations applied:', asyncio.run(db.migrate(admin._replace(path='/' + database).geturl(), app_role=role)))
{{- end }}

{{/* An env entry read from the Secret; call with (dict "root" $ "key" "SB_DATABASE_URL"). */}}
{{- define "switchboard.secretEnv" -}}
- name: {{ .key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.secretName" .root }}
      key: {{ .key }}
{{- end -}}
