"""glue: StartJobRun runs the stored job's script with Spark in local mode; its runs, logs and events as Glue's;
scheduled triggers start their jobs at their times."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.glue.models import job_runs
from modelwerk.local.services.glue.responses import HANDLERS
from modelwerk.local.services.glue.triggers import scheduled_triggers


def _start(context):
    job_runs.start(context)
    scheduled_triggers.start(context)


SERVICE = Service(name="glue", handlers=HANDLERS, start=_start, stop=job_runs.stop)
