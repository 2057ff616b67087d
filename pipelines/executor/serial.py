"""Run jobs one after another in this process, in dependency order, with the same retries as Ray."""

from __future__ import annotations

import logging
import socket
import traceback
from collections import deque
from typing import Any

from pipelines.executor.base import Executor, Job, JobContext, JobFailure, JobKey, call_job

log = logging.getLogger(__name__)


class SerialExecutor(Executor):
    """The default executor: no Ray, no device pinning (a job keeps its configured device)."""

    max_in_flight = 1

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._queue: deque[tuple[Job, dict[JobKey, Any]]] = deque()

    def _submit(self, job: Job, inputs: dict[JobKey, Any]) -> None:
        self._queue.append((job, inputs))

    def _wait_any(self) -> tuple[JobKey, Any]:
        job, inputs = self._queue.popleft()
        ctx = JobContext(job.key, device=None, workers=self.cfg.cpus_per_job, inputs=inputs)
        failure = None
        attempts = self.cfg.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                result = call_job(job.fn, ctx, job.kwargs)  # bad input: a JobFailure, not retried
                self.placement[job.key] = f"{socket.gethostname()} (serial)"
                return job.key, result
            except Exception as error:  # a job's error becomes its outcome; the other jobs go on
                failure = JobFailure(job.key, f"{type(error).__name__}: {error}", traceback.format_exc())
                if attempt < attempts:  # said, like Ray says it: a retried failure is still a bug to see
                    log.warning(
                        "job %s failed on attempt %d of %d (%s); retrying",
                        "-".join(map(str, job.key)),
                        attempt,
                        attempts,
                        failure.error,
                    )
        return job.key, failure
