{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "modeldeploy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, or just the release name when it already contains the chart name. */}}
{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Labels of the chart's own objects. The managed-by value is Helm, not "modeldeploy": the operator
watches Deployments labelled app.kubernetes.io/managed-by=modeldeploy, and its own Deployment must
not be one of them.
*/}}
{{- define "modeldeploy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modeldeploy.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modeldeploy.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
Rules for the namespaced resources the operator touches, derived from the code:
operator/modeldeploy/adapters/kube.py (the reconciler's calls) and
operator/modeldeploy/handlers/modeldeployment.py (what Kopf watches and patches).
Used in the ClusterRole when watching all namespaces, and in each Role otherwise.
Widening any of these fails tests/unit/test_chart.py on purpose.
*/}}
{{- define "modeldeploy.namespacedRules" -}}
# Every rule below is used by the operator; the handlers' watches (list + watch) fill its cache, and
# the reconciler reads from that cache (handlers/modeldeployment.py, adapters/cache.py).
# ModelDeployments: watched (Kopf event handlers; one list at start). Patched only to remove a rollout
# command annotation once its outcome is in status (policy/commands.py); Kopf keeps no annotations.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["list", "watch", "patch"]
# Kube.patch_status writes status through the status subresource (merge patch).
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Children, applied with server-side apply (patch; create when new). A name not in the cache is read
# once (get) to refuse taking over an object that is not ours (reconcile/act.py). Deletes are of our
# own stale children only (uid precondition). ConfigMaps: per-revision config.pbtxt and compression
# cache records; Services: the Triton Service; Deployments: one per track.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The stable Deployment while a canary runs is resized, not re-rendered (Kube.scale).
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
# Secrets: the model source of each Deployment (<deployment>-model, applied) and the agent token
# (<name>-agent-keys: the agents' token and the Triton control key, created once, read when an agent is
# told to swap). Secrets are not watched.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Compression Jobs: created once per content key, watched (label managed-by=modeldeploy).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# Serving pods and compression pods (label managed-by=modeldeploy): watched for diagnosis, agents'
# addresses and compression results (termination messages).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# The HTTPRoute of a canary with Gateway API routing (spec.rollout.canary.trafficRouting), applied like
# the other children and watched (label managed-by=modeldeploy) for drift.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# core v1 Events about ModelDeployments (phase transitions), posted by the operator's workers.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}

{{/* The one cluster-scoped need in every mode. */}}
{{- define "modeldeploy.crdRules" -}}
# Kopf lists and watches CustomResourceDefinitions at run time to notice when the ModelDeployment
# CRD is installed, upgraded or removed (cluster-scoped: no Role can grant it).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end -}}

{{/*
Only when watching some namespaces. Kopf (not clusterwide) lists and watches Namespaces to learn
which watched namespaces exist. Without this it retries the list for about a minute at every
start (error logs, nothing reconciled meanwhile), then falls back to assuming they exist, and never
notices a watched namespace created later. Read-only, names and labels of namespaces only.
*/}}
{{- define "modeldeploy.namespaceRules" -}}
# Kopf lists and watches Namespaces to find which of the watched namespaces exist (see above).
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end -}}
