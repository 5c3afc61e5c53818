"""The RQ worker `payhooks worker` runs: RQ's own, quiet about failures the job classified.

RQ logs every exception a job raises at ERROR with its traceback. The job function
(workers/jobs.py) already logs each failure it recognises as one structured line at
WARNING with its reason (``billing.failed`` or ``billing.retry``), so for those RQ's line
would only repeat it, twenty lines long. Tracebacks are kept for what the job did not
expect: bugs.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from redis.exceptions import RedisError
from rq import Worker
from rq.job import Job
from rq.timeouts import BaseTimeoutException

from workers.errors import JobError

#: What workers/jobs.py classifies (and logs) before letting it reach RQ.
CLASSIFIED: tuple[type[BaseException], ...] = (JobError, RedisError, BaseTimeoutException)


def classified(exc: BaseException | None) -> bool:
    return isinstance(exc, CLASSIFIED)


class PaymentWorker(Worker):
    def handle_exception(
        self,
        job: Job,
        *exc_info: Any,
    ) -> None:
        exc_type, exc, tb = _unpack(exc_info)
        if not classified(exc):
            super().handle_exception(job, exc_type, exc, tb)
            return
        self.log.debug("Worker %s: job %s failed as classified (%s)", self.name, job.id, exc_type)
        # RQ's own handler chain still runs (none is installed by default).
        for handler in self._exc_handlers:
            if handler(job, exc_type, exc, tb) is False:
                break


def _unpack(
    exc_info: tuple[Any, ...],
) -> tuple[type[BaseException] | None, BaseException | None, TracebackType | None]:
    exc_type, exc, tb = (tuple(exc_info) + (None, None, None))[:3]
    return exc_type, exc, tb
