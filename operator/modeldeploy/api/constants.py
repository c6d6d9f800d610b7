"""Names that are part of the API contract: group, version, labels, condition types and reasons.

Kept in one place so renderers, the status policy, tests and docs agree on spelling.
"""

GROUP = "modeldeploy.io"
VERSION = "v1alpha1"
PLURAL = "modeldeployments"
KIND = "ModelDeployment"
API_VERSION = f"{GROUP}/{VERSION}"

FIELD_MANAGER = "modeldeploy-operator"

# Labels on every child object and on the serving pods.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = "modeldeploy.io/model"
LABEL_DEPLOYMENT = "modeldeploy.io/modeldeployment"
LABEL_REVISION = "modeldeploy.io/revision"
LABEL_TRACK = "modeldeploy.io/track"
# Full ModelDeployment name on serving pods (labels are cut at 63 characters), so a pod event can be
# traced to its owner without walking Pod -> ReplicaSet -> Deployment.
ANNOTATION_OWNER = "modeldeploy.io/modeldeployment"

MANAGED_BY = "modeldeploy"
COMPONENT_PREDICTOR = "predictor"
TRACK_STABLE = "stable"
TRACK_CANARY = "canary"
# Which role a Service plays in a canary (Gateway API routing): stable or canary backend.
LABEL_ROLE = "modeldeploy.io/role"
# Selector label of the Deployments made for one revision (canary rollouts): the revision they were
# created for, fixed for their life (a Deployment's selector is immutable), unlike the pods' revision
# label, which follows the template.
LABEL_POD_SET = "modeldeploy.io/pod-set"
# On every Triton Deployment: the revision of its pod template without the model (render/names.revision_of),
# to tell whether a canary is needed when the pods' revision label also names a model.
ANNOTATION_TEMPLATE_REVISION = "modeldeploy.io/template-revision"

# GPU conventions of the NVIDIA device plugin and GPU feature discovery.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TAINT_KEY = "nvidia.com/gpu"

# Triton ports.
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

MODEL_REPOSITORY = "/models"

# Condition types. Ready/Reconciling/Stalled follow kstatus; FieldsSupported says when the spec asks
# for something this version accepts but does not do yet.
COND_READY = "Ready"
COND_RECONCILING = "Reconciling"
COND_STALLED = "Stalled"
COND_FIELDS_SUPPORTED = "FieldsSupported"

# Phases (documented in the CRD's status.phase description).
PHASE_PENDING = "Pending"
PHASE_PROGRESSING = "Progressing"
PHASE_READY = "Ready"
PHASE_DEGRADED = "Degraded"
PHASE_FAILED = "Failed"

# Condition reasons.
REASON_AVAILABLE = "Available"
REASON_CREATING = "Creating"
REASON_ROLLING_OUT = "RollingOut"
REASON_SCALING = "Scaling"
REASON_PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_FETCH_FAILED = "ModelFetchFailed"
REASON_IMAGE_PULL = "ImagePullFailed"
REASON_CRASH_LOOP = "CrashLoop"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_APPLY_FAILED = "ApplyFailed"
REASON_NOT_IMPLEMENTED = "NotImplemented"
REASON_ALL_SUPPORTED = "AllSupported"
REASON_SCALED_TO_ZERO = "ScaledToZero"
REASON_DEGRADED = "ReplicasUnavailable"
REASON_REPLICA_FAILURE = "FailedCreate"

# Compression (spec.compression): Jobs, their cache records, and the status they produce.
COMPONENT_COMPRESSION = "compression"
LABEL_COMPRESSION_KEY = "modeldeploy.io/compression-key"  # first 40 hex digits of the content hash
ANNOTATION_COMPRESSION_KEY = "modeldeploy.io/compression-key"  # the whole hash
ANNOTATION_PRODUCER = "modeldeploy.io/produced-by"  # "<uid>/<generation>" of the ModelDeployment whose Job ran
COND_COMPRESSED = "Compressed"
REASON_COMPRESSING = "Compressing"
REASON_VARIANT_SELECTED = "VariantSelected"
REASON_GATE_FAILED = "CompressionGateFailed"
REASON_COMPRESSION_FAILED = "CompressionFailed"
REASON_INVALID_RECIPE = "InvalidRecipe"

# In-place model swaps (model agent sidecar).
# Stamped on the pod template (by a separate field manager, like `kubectl rollout restart`) when the
# same model version comes from new files: an in-place load cannot replace a version by itself.
ANNOTATION_MODEL_FILES = "modeldeploy.io/model-files"
RESTART_FIELD_MANAGER = "modeldeploy-operator-restart"
