"""The Azure Batch executor: each attempt a Batch task whose script runs prepare, the module and
commit as containers.

See `_task` for the task's id, environment and script, `_client` for the SDK (the only module
that imports it) and `_executor` for how tasks are followed, finished and adopted.
"""

from ion.dispatcher.executors.azurebatch._client import BatchApi, TaskView
from ion.dispatcher.executors.azurebatch._executor import AzureBatchExecutor
from ion.dispatcher.executors.azurebatch._task import (
    TaskPlan,
    TaskSettings,
    batch_id,
    batch_job_id,
    task_plan,
)

__all__ = [
    "AzureBatchExecutor",
    "BatchApi",
    "TaskPlan",
    "TaskSettings",
    "TaskView",
    "batch_id",
    "batch_job_id",
    "task_plan",
]
