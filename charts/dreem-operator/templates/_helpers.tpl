{{- define "dreem-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dreem-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dreem-operator.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dreem-operator.serviceAccountName" -}}
{{- default (include "dreem-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- /* The images default to <registry>/dreem-operator and <registry>/dreem-trainer at the chart's appVersion: the
names `make images REGISTRY=<registry>` builds. */ -}}
{{- define "dreem-operator.image" -}}
{{- $repository := .Values.image.repository | default (printf "%s/dreem-operator" .Values.registry) -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "dreem-operator.trainerImage" -}}
{{- .Values.trainer.image | default (printf "%s/dreem-trainer:%s" .Values.registry .Chart.AppVersion) -}}
{{- end -}}

{{- /* The metrics Service: the fullname cut so that "-metrics" still fits a Service name's 63 characters. */ -}}
{{- define "dreem-operator.metricsName" -}}
{{- printf "%s-metrics" (include "dreem-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{- /* The operator's own rule for its Lease timings (settings.py), checked at install rather than in a
crash-looping pod: lease duration > renew deadline > 1.2 x retry period > 0. */ -}}
{{- define "dreem-operator.checkLeaseTimings" -}}
{{- $lease := .Values.leaderElection -}}
{{- $duration := float64 $lease.leaseDurationSeconds -}}
{{- $renew := float64 $lease.renewDeadlineSeconds -}}
{{- $retry := float64 $lease.retryPeriodSeconds -}}
{{- if not (and (gt $duration $renew) (gt $renew (mulf 1.2 $retry))) -}}
{{- fail (printf "leaderElection: leaseDurationSeconds (%v) must exceed renewDeadlineSeconds (%v), which must exceed 1.2 x retryPeriodSeconds (%v)" $lease.leaseDurationSeconds $lease.renewDeadlineSeconds $lease.retryPeriodSeconds) -}}
{{- end -}}
{{- end -}}
