"""Cron tick dedup: one arq cron job per `[[schedule]]`, its ticks from cronsim, each run once.

arq looks at its cron jobs in every worker on every poll. A cron job with `unique=True` is
queued under the id `<name>:<tick in ms>`, and arq's enqueue refuses an id that is queued or
has a result, so N workers seeing the same tick queue it once. arq computes a job's next tick
from field sets; `ScheduleCronJob` asks cronsim instead (through `pipeline.crawl.cron`), so a
schedule means exactly what its crontab line says. `calculate_next` is the one method arq calls
for that.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from pipeline.crawl.cron import next_tick
from pipeline.settings import Settings
from pipeline.worker.registry import SCHEDULED_CRAWL_JOB, arq_job, load_function

CRON_TIMEOUT_S = 120


@dataclass
class ScheduleCronJob(CronJob):
    expression: str = ""

    def calculate_next(self, prev_run: dt.datetime) -> None:
        self.next_run = next_tick(self.expression, prev_run)


def cron_jobs(settings: Settings) -> list[CronJob]:
    """One arq cron job per schedule, each calling `scheduled_crawl(ctx, name)` on its ticks."""
    scheduled_crawl = load_function(SCHEDULED_CRAWL_JOB)
    jobs: list[CronJob] = []
    for spec in settings.schedules:

        async def tick(ctx: dict[str, Any], _name: str = spec.name) -> None:
            await scheduled_crawl(ctx, _name)

        tick.__qualname__ = tick.__name__ = f"schedule_{spec.name}"
        jobs.append(
            ScheduleCronJob(
                name=f"schedule:{spec.name}",
                coroutine=cast(WorkerCoroutine, arq_job(tick)),
                month=None,
                day=None,
                weekday=None,
                hour=None,
                minute=None,
                second=None,
                microsecond=0,
                run_at_startup=False,
                unique=True,
                job_id=None,
                timeout_s=CRON_TIMEOUT_S,
                keep_result_s=0,
                keep_result_forever=False,
                max_tries=3,
                expression=spec.cron,
            )
        )
    return jobs
