{{/* Chart name, truncated to the 63 characters a label value may have. */}}
{{- define "rowcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name alone when it already contains the chart name. */}}
{{- define "rowcast.fullname" -}}
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

{{- define "rowcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rowcast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "rowcast.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rowcast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rowcast
{{- end }}

{{- define "rowcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rowcast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rowcast.image" -}}
{{- if eq .Values.image.repository "registry.example.com/rowcast/rowcast" }}
{{- fail "image.repository is the placeholder registry.example.com/rowcast/rowcast, which does not exist: build the image (npm run image), push it to your registry (skopeo copy oci-archive:dist/rowcast-<version>.oci.tar docker://<registry>/rowcast:<version>) and set image.repository to it; see docs/install.md" }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the controller runs sharded (--sharding): explicitly, or by default with more than one replica. */}}
{{- define "rowcast.sharding" -}}
{{- if kindIs "bool" .Values.sharding.enabled }}
{{- if .Values.sharding.enabled }}true{{ end }}
{{- else if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* "true" when the controller runs with --leader-elect (sharding implies it: the leader is the sharder). */}}
{{- define "rowcast.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) (include "rowcast.sharding" .) }}true{{ end }}
{{- end }}

{{/*
RBAC rules: together exactly hubPolicyRules of src/hub/rbac.ts (test/chart.test.ts
compares). Split by where they are granted:
- watched: the objects the controller reads and writes in the namespaces it
  watches (a ClusterRole for all namespaces, or a Role in watchNamespace);
- hubId: get on kube-system, whose UID is the hub id unless controller.hubId is set;
- leaderElection: the leader Lease, always in the release namespace (a Role), so
  the controller can never touch other components' leader Leases;
- sharding: with it, the shard Leases the sharder watches, takes over and deletes
  (same Role).
*/}}
{{- define "rowcast.rules.watched" -}}
- apiGroups: ["rowcast.dev"]
  resources: ["databasequeryresources"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["rowcast.dev"]
  resources: ["clustertargets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["rowcast.dev"]
  resources: ["databasequeryresources/status", "clustertargets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "rowcast.rules.hubId" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  resourceNames: ["kube-system"]
  verbs: ["get"]
{{- end }}

{{- define "rowcast.rules.leaderElection" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end }}

{{- define "rowcast.rules.sharding" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["list", "watch", "delete"]
{{- end }}

{{/* The subject every binding names. */}}
{{- define "rowcast.subjects" -}}
- kind: ServiceAccount
  name: {{ include "rowcast.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}
