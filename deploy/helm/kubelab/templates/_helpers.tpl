{{/* Names and labels. */}}
{{- define "kubelab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubelab.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubelab.labels" -}}
{{ include "kubelab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubelab.image" -}}
{{ printf "%s:%s" .Values.image.repository (toString .Values.image.tag) | quote }}
{{- end -}}

{{- define "kubelab.appSecret" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-app" (include "kubelab.fullname" .)) -}}
{{- end -}}

{{- define "kubelab.adminSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-runtime-admin" (include "kubelab.fullname" .)) -}}
{{- end -}}

{{/* The backend must be one that works (config/settings.py refuses the others too). */}}
{{- define "kubelab.checkBackend" -}}
{{- if eq .Values.sandboxBackend "kubernetes" -}}
{{- fail "sandboxBackend: kubernetes works in the platform (SANDBOX_BACKEND=kubernetes) but this chart does not deploy it yet: per-node runtimed TLS certificates, the node agent beside runtimed and their RBAC are missing; see docs/scaling-out.md (issue #17). Use namespace." -}}
{{- else if ne .Values.sandboxBackend "namespace" -}}
{{- fail (printf "sandboxBackend: expected namespace, got %q" .Values.sandboxBackend) -}}
{{- end -}}
{{- end -}}

{{/* Pod security of the unprivileged processes (web, workers, beat, migrate). */}}
{{- define "kubelab.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.appUid }}
runAsGroup: {{ .Values.appGid }}
fsGroup: {{ .Values.appGid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubelab.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Placement beside runtimed: the namespace backend reaches it through its unix socket. */}}
{{- define "kubelab.labPlacement" -}}
nodeSelector:
  {{- toYaml .Values.labNodes.nodeSelector | nindent 2 }}
{{- with .Values.labNodes.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Environment of every platform process (no secret values: those are files). */}}
{{- define "kubelab.env" -}}
- name: SANDBOX_BACKEND
  value: {{ .Values.sandboxBackend | quote }}
- name: SECRET_KEY_FILE
  value: /run/secrets/kubelab/secret-key
- name: DATABASE_URL_FILE
  value: /run/secrets/kubelab/database-url
- name: REDIS_URL_FILE
  value: /run/secrets/kubelab/redis-url
- name: RUNTIME_SOCKET
  value: {{ printf "%s/runtimed.sock" .Values.runtimed.socketDir | quote }}
- name: RUNTIME_REQUIRED
  value: "true"
- name: ALLOWED_HOSTS
  value: {{ include "kubelab.allowedHosts" . | quote }}
- name: CSRF_TRUSTED_ORIGINS
  value: {{ join "," .Values.config.csrfTrustedOrigins | quote }}
- name: SECURE_HTTPS
  value: {{ .Values.config.secureHttps | toString | quote }}
- name: SITE_NAME
  value: {{ .Values.config.siteName | quote }}
- name: SIGNUP_OPEN
  value: {{ .Values.config.signupOpen | toString | quote }}
- name: TIME_ZONE
  value: {{ .Values.config.timeZone | quote }}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: GRADER_QUEUE
  value: {{ .Values.workers.grading.queue | quote }}
- name: CELERY_PROVISIONING_CONCURRENCY
  value: {{ .Values.workers.provisioning.concurrency | toString | quote }}
- name: CELERY_GRADING_CONCURRENCY
  value: {{ .Values.workers.grading.concurrency | toString | quote }}
{{- range $name, $value := .Values.config.extraEnv }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{- define "kubelab.allowedHostList" -}}
{{- $hosts := list -}}
{{- if .Values.ingress.enabled -}}{{- $hosts = append $hosts .Values.ingress.host -}}{{- end -}}
{{- $hosts = concat $hosts .Values.config.allowedHosts | uniq -}}
{{- if not $hosts -}}{{- fail "config.allowedHosts (or ingress.host with the ingress enabled): Django answers 400 to every other Host" -}}{{- end -}}
{{- toJson $hosts -}}
{{- end -}}

{{- define "kubelab.allowedHosts" -}}
{{- include "kubelab.allowedHostList" . | fromJsonArray | join "," -}}
{{- end -}}

{{/* The Host header of web's probes: one Django accepts (a bare IP would get 400). */}}
{{- define "kubelab.probeHost" -}}
{{- include "kubelab.allowedHostList" . | fromJsonArray | first | trimPrefix "." -}}
{{- end -}}

{{- define "kubelab.appVolumes" -}}
- name: app-secrets
  secret:
    secretName: {{ include "kubelab.appSecret" . }}
    defaultMode: 0440
- name: runtime-socket
  hostPath:
    path: {{ .Values.runtimed.socketDir }}
    type: DirectoryOrCreate
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "kubelab.appMounts" -}}
- name: app-secrets
  mountPath: /run/secrets/kubelab
  readOnly: true
- name: runtime-socket
  mountPath: {{ .Values.runtimed.socketDir }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* With the namespace backend a session lives on one runtimed that every web and worker pod
must reach through the same unix socket: more than one lab node would split the class across
daemons that do not know each other's sandboxes. Checked at install/upgrade (lookup sees the
cluster then; `helm template` cannot, and renders). */}}
{{- define "kubelab.checkOneLabNode" -}}
{{- $selector := .Values.labNodes.nodeSelector -}}
{{- $matching := list -}}
{{- range (lookup "v1" "Node" "" "").items -}}
{{- $labels := .metadata.labels | default dict -}}
{{- $ok := true -}}
{{- range $k, $v := $selector -}}
{{- if ne (get $labels $k) (toString $v) -}}{{- $ok = false -}}{{- end -}}
{{- end -}}
{{- if $ok -}}{{- $matching = append $matching .metadata.name -}}{{- end -}}
{{- end -}}
{{- if gt (len $matching) 1 -}}
{{- fail (printf "labNodes: %d nodes match %v (%s), but with sandboxBackend namespace exactly one lab node works (README: \"One lab node\")" (len $matching) $selector (join ", " $matching)) -}}
{{- end -}}
{{- end -}}
