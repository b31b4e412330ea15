"""Glue's scheduled triggers start their jobs at their times while the embedded AWS runs."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

SCRIPT = "import sys\nprint('triggered with', sys.argv[1:])\n"


def test_a_scheduled_trigger_starts_its_job_at_its_time_and_not_before(embedded_aws):
    from modelwerk.local.services.events.schedules import Schedule
    from modelwerk.local.services.glue.triggers import scheduled_triggers

    s3, glue = embedded_aws.client("s3"), embedded_aws.client("glue")
    s3.create_bucket(Bucket="trigger-scripts", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_object(Bucket="trigger-scripts", Key="job.py", Body=SCRIPT.encode())
    glue.create_job(Name="hourly-job", Role="arn:aws:iam::123456789012:role/glue",
                    Command={"Name": "pythonshell", "ScriptLocation": "s3://trigger-scripts/job.py"})
    glue.create_trigger(Name="hourly", Type="SCHEDULED", Schedule="cron(15 * * * ? *)", StartOnCreation=True,
                        Actions=[{"JobName": "hourly-job", "Arguments": {"--mode": "scheduled"}}])
    glue.create_trigger(Name="paused", Type="SCHEDULED", Schedule="cron(15 * * * ? *)",
                        Actions=[{"JobName": "hourly-job"}])
    start = datetime.now(timezone.utc)  # the server's own loop looks at the same triggers in real time
    due = Schedule("cron(15 * * * ? *)").next_after(start)
    assert scheduled_triggers.tick(start) == []  # first seen: due at the next quarter past
    assert scheduled_triggers.tick(due - timedelta(seconds=1)) == []
    (run_id,) = scheduled_triggers.tick(due + timedelta(seconds=2))
    deadline = time.monotonic() + 60
    while (run := glue.get_job_run(JobName="hourly-job", RunId=run_id)["JobRun"])["JobRunState"] not in (
            "SUCCEEDED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert run["JobRunState"] == "SUCCEEDED", run.get("ErrorMessage")
    assert run["Arguments"] == {"--mode": "scheduled"}
    assert [r["Id"] for r in glue.get_job_runs(JobName="hourly-job")["JobRuns"]] == [run_id]  # not the paused one
