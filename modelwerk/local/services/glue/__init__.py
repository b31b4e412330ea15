"""glue: StartJobRun runs the stored job's script with Spark in local mode; its runs, logs and events as Glue's."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.glue.models import job_runs
from modelwerk.local.services.glue.responses import HANDLERS

SERVICE = Service(name="glue", handlers=HANDLERS, start=job_runs.start, stop=job_runs.stop)
