{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name when it already contains the chart name. */}}
{{- define "sluice.fullname" -}}
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

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (Deployment selectors are immutable). */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The app.kubernetes.io labels on every object of the release. */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sluice
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sluice.leaseName" -}}
{{- default (include "sluice.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "sluice.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The rights the operator needs on the objects of the namespaces it watches: in a ClusterRole when
it watches every namespace, in a Role of `watchNamespace` otherwise. Each rule names the code that
needs it; e2e/tests/install checks that the operator uses every verb granted here and needs no
other (see the chart README). No wildcards, no Secrets.
*/}}
{{- define "sluice.namespacedRules" -}}
# The controllers' watch caches (reflectors) of the three kinds.
- apiGroups: ["sluice.dev"]
  resources: ["datasets"]
  verbs: ["list", "watch"]
# Backfills and Pipelines also get: the Backfill controller reads the object fresh before it
# launches Jobs, so that a just-changed spec (suspend, range) is never acted on from a stale
# cache; the Pipeline controller reads it fresh when a status write found its cache stale.
- apiGroups: ["sluice.dev"]
  resources: ["pipelines", "backfills"]
  verbs: ["get", "list", "watch"]
# Status is written with server-side apply on the status subresource only; the operator never
# writes spec or metadata of users' objects.
- apiGroups: ["sluice.dev"]
  resources: ["pipelines/status", "datasets/status", "backfills/status"]
  verbs: ["patch"]
# Jobs carry an owner reference with blockOwnerDeletion to their Pipeline or Backfill. Where the
# OwnerReferencesPermissionEnforcement admission plugin is on (OpenShift), creating such a Job
# needs `update` on the owner's finalizers subresource. The operator never calls this itself.
- apiGroups: ["sluice.dev"]
  resources: ["pipelines/finalizers", "backfills/finalizers"]
  verbs: ["update"]
# Step Jobs: created per run and step, deleted when history is pruned, a run is replaced or a
# Backfill is deleted; watched (label-selected) for run state and the running-Job caps. `get`:
# when a Backfill's Job name already exists, the controller reads that Job to tell its own from
# a window another owner (the Pipeline's schedule) runs.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Step pods (label-selected): a watch cache of their termination messages, the results steps
# report (rows written, watermark, schema) for Dataset status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Backfill budgets: the ResourceQuota a Backfill names is read fresh (get) before each launch
# decision and watched (a change wakes its Backfills); LimitRange defaults (the requests a step
# pod gets when its template sets none, which the quota then counts) are a watch cache.
- apiGroups: [""]
  resources: ["resourcequotas"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["limitranges"]
  verbs: ["list", "watch"]
# Who steps may run as: a metadata-only watch cache of the ServiceAccounts labelled
# sluice.dev/steps-allowed=true (label-selected); a step naming any other account gets no Job.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch"]
# The shared event Recorder: create, and patch to aggregate a repeated event.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* Reading the three Sluice CRDs at start-up (are they installed and Established?). */}}
{{- define "sluice.crdRule" -}}
# Start-up check that the Sluice CRDs are installed and Established: get, by name only.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["pipelines.sluice.dev", "datasets.sluice.dev", "backfills.sluice.dev"]
  verbs: ["get"]
{{- end }}
