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
# ModelDeployments: Kopf lists and watches them; Kube.get_model_deployment reads one when a
# Deployment event arrives; Kopf patches them to keep its progress/diff-base annotations.
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# Kube.patch_status writes status through the status subresource (merge patch).
- apiGroups: ["modeldeploy.io"]
  resources: ["modeldeployments/status"]
  verbs: ["patch"]
# Kube.apply: server-side apply of the per-revision config.pbtxt ConfigMaps and of the compression
# cache records (apply = patch, and create when the object does not exist yet); prune_config_maps
# lists and deletes old revisions'; Kube.get_config_map looks a compression result up by its key.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "list", "delete"]
# Kube.create_secret_token / read_secret_key: the Secret <name>-agent-token (created once, read for
# in-place swaps): only the operator may tell the pods' model agents what to serve.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create"]
# Kube.apply: server-side apply of the Triton Service.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "patch"]
# Kube.apply: server-side apply of the Triton Deployment; Kopf lists and watches Deployments
# labelled app.kubernetes.io/managed-by=modeldeploy (on_deployment_event) to take back drift;
# Kube.get_deployment observes the serving Deployment while a compression Job holds the rollout.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "list", "watch"]
# Compression Jobs: Kube.create_job starts one, Kube.get_job follows it; Kopf watches Jobs labelled
# app.kubernetes.io/managed-by=modeldeploy (on_job_event) to act when one finishes.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create", "list", "watch"]
# Kube.list_pods reads the serving pods to report why they are not ready (fetch failure, crash loop,
# unschedulable), and a compression Job's pods for its result (termination message); Kopf watches
# those pods (label managed-by=modeldeploy) for the same problems.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Kopf posts core v1 Events for ModelDeployments (kopf.event and its own warnings): a POST each,
# never a patch (kopf/_cogs/clients/events.py).
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
