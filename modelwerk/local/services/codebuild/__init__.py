"""codebuild: StartBuild runs the project's buildspec on this machine (S3 or inline source, one bash process, the
project's service role against the embedded AWS); its builds, phases, logs and exported variables as CodeBuild's."""

from modelwerk.local.services._routing import Service
from modelwerk.local.services.codebuild.models import builds
from modelwerk.local.services.codebuild.responses import HANDLERS

SERVICE = Service(name="codebuild", handlers=HANDLERS, start=builds.start)
