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

{{/* The backend must be one the chart deploys (config/settings.py refuses others too). */}}
{{- define "kubelab.checkBackend" -}}
{{- if eq .Values.sandboxBackend "kubernetes" -}}
{{- $sel := .Values.labNodes.nodeSelector -}}
{{- if or (ne (len $sel) 1) (ne (toString (get $sel "kubelab.io/lab-node")) "true") -}}
{{- fail (printf "labNodes.nodeSelector: with sandboxBackend kubernetes it must be exactly {kubelab.io/lab-node: \"true\"} (the placeholder Pods select that label: runtime/placement.py), got %s" (toJson $sel)) -}}
{{- end -}}
{{- $wait := toString .Values.kubernetesBackend.capacityWait -}}
{{- $secs := 0 -}}
{{- if hasSuffix "m" $wait -}}{{- $secs = mul (atoi (trimSuffix "m" $wait)) 60 -}}{{- else -}}{{- $secs = atoi (trimSuffix "s" $wait) -}}{{- end -}}
{{- if or (lt (int $secs) 10) (gt (int $secs) 780) -}}
{{- fail (printf "kubernetesBackend.capacityWait: between 10s and 13m (SANDBOX_CAPACITY_WAIT: a provisioning task waits that long for room, within its own 14-minute limit), got %s" $wait) -}}
{{- end -}}
{{- $tls := .Values.kubernetesBackend.tls -}}
{{- if and $tls.existingSecret (not (contains "-----BEGIN CERTIFICATE-----" $tls.caCertificate)) -}}
{{- fail "kubernetesBackend.tls.caCertificate: with tls.existingSecret, the PEM certificate of that Secret's CA (tls.crt) is required: web and the workers trust it, and only it (--set-file kubernetesBackend.tls.caCertificate=ca.crt)" -}}
{{- end -}}
{{- if and (not $tls.existingSecret) $tls.caCertificate -}}
{{- fail "kubernetesBackend.tls.caCertificate: set only with tls.existingSecret (the chart's own CA brings its certificate)" -}}
{{- end -}}
{{- else if ne .Values.sandboxBackend "namespace" -}}
{{- fail (printf "sandboxBackend: expected namespace or kubernetes, got %q" .Values.sandboxBackend) -}}
{{- end -}}
{{- end -}}

{{- define "kubelab.k8s" -}}
{{- if eq .Values.sandboxBackend "kubernetes" }}true{{ end -}}
{{- end -}}

{{- define "kubelab.caSecret" -}}
{{- .Values.kubernetesBackend.tls.existingSecret | default (printf "%s-runtimed-ca" (include "kubelab.fullname" .)) -}}
{{- end -}}

{{/* The public half of the runtimed CA (a ConfigMap): what web, workers, beat and migrate trust. */}}
{{- define "kubelab.caConfigMap" -}}
{{- printf "%s-runtimed-ca" (include "kubelab.fullname" .) -}}
{{- end -}}

{{/* A service account token for one container only (never the pod-wide automount). */}}
{{- define "kubelab.kubeApiVolume" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end -}}

{{- define "kubelab.kubeApiMount" -}}
- name: kube-api-access
  mountPath: /var/run/secrets/kubernetes.io/serviceaccount
  readOnly: true
{{- end -}}

{{- define "kubelab.caVolume" -}}
- name: runtime-ca
  configMap:
    name: {{ include "kubelab.caConfigMap" . }}
    defaultMode: 0444
{{- end -}}

{{- define "kubelab.caMount" -}}
- name: runtime-ca
  mountPath: /run/kubelab-ca
  readOnly: true
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

{{/* web and the workers: beside runtimed with the namespace backend (its unix socket);
anywhere with the kubernetes backend (TLS to each lab node). */}}
{{- define "kubelab.appPlacement" -}}
{{- if not (include "kubelab.k8s" .) -}}
{{ include "kubelab.labPlacement" . }}
{{- end -}}
{{- end -}}

{{/* Placement on the lab nodes (runtimed; web and workers with the namespace backend). */}}
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
{{ include "kubelab.envWith" (dict "c" . "runtimeRequired" true) }}
{{- end -}}

{{/* .c: the chart's context; .runtimeRequired: false for a process that never uses runtimed. */}}
{{- define "kubelab.envWith" -}}
{{- $c := .c -}}
{{- $required := .runtimeRequired -}}
- name: SANDBOX_BACKEND
  value: {{ $c.Values.sandboxBackend | quote }}
- name: SECRET_KEY_FILE
  value: /run/secrets/kubelab/secret-key
- name: DATABASE_URL_FILE
  value: /run/secrets/kubelab/database-url
- name: REDIS_URL_FILE
  value: /run/secrets/kubelab/redis-url
{{- if include "kubelab.k8s" $c }}
# each lab node's runtimed over TLS (runtime/placement.py); /healthz's runtime check is
# this host's socket, which these pods do not have
- name: RUNTIME_REQUIRED
  value: "false"
- name: SANDBOX_NAMESPACE
  value: {{ $c.Values.kubernetesBackend.namespace | quote }}
- name: SANDBOX_CAPACITY_WAIT
  value: {{ $c.Values.kubernetesBackend.capacityWait | quote }}
- name: RUNTIME_NODE_PORT
  value: {{ $c.Values.kubernetesBackend.runtimedPort | toString | quote }}
- name: RUNTIME_CA_FILE
  value: /run/kubelab-ca/ca.crt
{{- else }}
- name: RUNTIME_SOCKET
  value: {{ printf "%s/runtimed.sock" $c.Values.runtimed.socketDir | quote }}
- name: RUNTIME_REQUIRED
  value: {{ $required | toString | quote }}
{{- end }}
- name: ALLOWED_HOSTS
  value: {{ include "kubelab.allowedHosts" $c | quote }}
- name: CSRF_TRUSTED_ORIGINS
  value: {{ join "," $c.Values.config.csrfTrustedOrigins | quote }}
- name: SECURE_HTTPS
  value: {{ $c.Values.config.secureHttps | toString | quote }}
- name: SITE_NAME
  value: {{ $c.Values.config.siteName | quote }}
- name: SIGNUP_OPEN
  value: {{ $c.Values.config.signupOpen | toString | quote }}
- name: TIME_ZONE
  value: {{ $c.Values.config.timeZone | quote }}
- name: LOG_LEVEL
  value: {{ $c.Values.config.logLevel | quote }}
- name: GRADER_QUEUE
  value: {{ $c.Values.workers.grading.queue | quote }}
- name: CELERY_PROVISIONING_CONCURRENCY
  value: {{ $c.Values.workers.provisioning.concurrency | toString | quote }}
- name: CELERY_GRADING_CONCURRENCY
  value: {{ $c.Values.workers.grading.concurrency | toString | quote }}
{{- range $name, $value := $c.Values.config.extraEnv }}
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
{{- if include "kubelab.k8s" . }}
{{ include "kubelab.caVolume" . }}
{{ include "kubelab.kubeApiVolume" . }}
{{- else }}
- name: runtime-socket
  hostPath:
    path: {{ .Values.runtimed.socketDir }}
    type: DirectoryOrCreate
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "kubelab.appMounts" -}}
- name: app-secrets
  mountPath: /run/secrets/kubelab
  readOnly: true
{{- if include "kubelab.k8s" . }}
{{ include "kubelab.caMount" . }}
{{ include "kubelab.kubeApiMount" . }}
{{- else }}
- name: runtime-socket
  mountPath: {{ .Values.runtimed.socketDir }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* With the namespace backend a session lives on one runtimed that every web and worker pod
must reach through the same unix socket: more than one lab node would split the class across
daemons that do not know each other's sandboxes. Checked at install/upgrade (lookup sees the
cluster then; `helm template` cannot, and renders). */}}
{{- define "kubelab.checkOneLabNode" -}}
{{- if not (include "kubelab.k8s" .) -}}
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
{{- end -}}
