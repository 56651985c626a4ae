{{/* Chart name, overridable. */}}
{{- define "aml-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "aml-operator.fullname" -}}
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

{{- define "aml-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aml-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aml-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aml-operator.labels" -}}
helm.sh/chart: {{ include "aml-operator.chart" . }}
{{ include "aml-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "aml-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aml-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aml-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The default credentials Secret as namespace/name, or empty. */}}
{{- define "aml-operator.defaultCredentials" -}}
{{- with .Values.credentials.default.name }}
{{- printf "%s/%s" (default $.Release.Namespace $.Values.credentials.default.namespace) . }}
{{- end }}
{{- end }}

{{/* The kinds' plural resource names. */}}
{{- define "aml-operator.resources" -}}
- amlworkspaces
- amlcomputes
- amldatastores
- amlmodelversions
- amlenvironmentversions
- amlcodeversions
- amlonlineendpoints
- amlonlinedeployments
- amlroleassignments
{{- end }}

{{/*
The rules the operator needs on the objects it reconciles, in whichever namespace(s) it watches.
Each verb is there because src/ calls it (tests/in_memory/chart.rs checks both ways):
  kinds get          - parents, and the assets a deployment names, are read by name (controller/resolve.rs)
  kinds list, watch  - the controllers and their watches on parent kinds (manager.rs); an asset
                       version lists the deployments that use it before its delete (kinds/assets.rs)
  kinds patch        - the finalizer (kube's finalizer helper) and owner references (server-side apply)
  kinds/status patch - status by server-side apply (controller/status.rs)
  kinds/finalizers update - setting blockOwnerDeletion on an owner reference to one of our objects
                       (the endpoint keys Secret) when OwnerReferencesPermissionEnforcement is on
  secrets get        - credentials Secrets (controller/credentials.rs), and the Secrets a spec takes a
                       value from (a compute's password, a datastore's key: controller/secret_values.rs)
  secrets patch      - the credentials-in-use finalizer on credentials Secrets (controller/protect.rs)
  secrets create, patch - the endpoint keys Secret (spec.keysSecret of AmlOnlineEndpoint)
  events create, patch  - kube's event Recorder (events.k8s.io/v1; patch bumps a repeated event's series)
*/}}
{{- define "aml-operator.watchRules" -}}
- apiGroups: ["amloperator.io"]
  resources:
    {{- include "aml-operator.resources" . | nindent 4 }}
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["amloperator.io"]
  resources:
    - amlworkspaces/status
    - amlcomputes/status
    - amldatastores/status
    - amlmodelversions/status
    - amlenvironmentversions/status
    - amlcodeversions/status
    - amlonlineendpoints/status
    - amlonlinedeployments/status
    - amlroleassignments/status
  verbs: ["patch"]
- apiGroups: ["amloperator.io"]
  resources:
    - amlworkspaces/finalizers
    - amlcomputes/finalizers
    - amldatastores/finalizers
    - amlmodelversions/finalizers
    - amlenvironmentversions/finalizers
    - amlcodeversions/finalizers
    - amlonlineendpoints/finalizers
    - amlonlinedeployments/finalizers
    - amlroleassignments/finalizers
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  # list and watch: metadata only, so a changed credentials Secret wakes its objects at once.
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
