"""The Kubernetes executor: each attempt a Job whose pod runs prepare, the module and commit.

See `_manifest` for the Job's shape, `_outcome` for how its status becomes a `JobResult`, and
`_executor` for the watch that follows the Jobs.
"""

from ion.dispatcher.executors.kubernetes._api import KubeApi, KubeApiError, default_namespace
from ion.dispatcher.executors.kubernetes._executor import KubernetesExecutor
from ion.dispatcher.executors.kubernetes._manifest import (
    BACKENDS_SECRET_DIR,
    MANAGED_BY,
    PodSettings,
    job_annotations,
    job_labels,
    job_manifest,
    label_value,
)
from ion.dispatcher.executors.kubernetes._outcome import Outcome, read_outcome

__all__ = [
    "BACKENDS_SECRET_DIR",
    "MANAGED_BY",
    "KubeApi",
    "KubeApiError",
    "KubernetesExecutor",
    "Outcome",
    "PodSettings",
    "default_namespace",
    "job_annotations",
    "job_labels",
    "job_manifest",
    "label_value",
    "read_outcome",
]
