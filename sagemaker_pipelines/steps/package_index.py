"""Print the pip index URL of the platform's package mirror, for jobs in subnets without internet access.

The training toolkit of SageMaker's framework images installs a script's ``requirements.txt`` through AWS
CodeArtifact when the job's environment names a repository in ``CA_REPOSITORY_ARN``; the processing steps follow the
same convention with this script: their entry point exports what it prints as ``PIP_INDEX_URL`` before installing
the model frameworks' pins. The token lasts 15 minutes, longer than an install takes, and is never written to disk.

    python3 package_index.py            # reads CA_REPOSITORY_ARN; exit 2 with one line on stderr when it is unusable
"""

from __future__ import annotations

import os
import re
import sys
from urllib.parse import urlsplit

ENVIRONMENT_VARIABLE = "CA_REPOSITORY_ARN"
TOKEN_SECONDS = 900
_ARN = re.compile(r"^arn:aws[a-z-]*:codeartifact:(?P<region>[a-z0-9-]+):(?P<owner>\d{12}):"
                  r"repository/(?P<domain>[a-z][a-z0-9-]{1,49})/(?P<repository>[A-Za-z0-9][A-Za-z0-9._-]{1,99})$")


class MirrorError(ValueError):
    """The repository ARN is missing or malformed."""


def parse_repository_arn(arn: str) -> dict[str, str]:
    """Region, domain owner, domain and repository of a CodeArtifact repository ARN."""
    match = _ARN.match((arn or "").strip())
    if match is None:
        raise MirrorError(f"{ENVIRONMENT_VARIABLE}={arn!r} is not a CodeArtifact repository ARN "
                          "(arn:aws:codeartifact:<region>:<account>:repository/<domain>/<repository>)")
    return match.groupdict()


def index_url(arn: str, client: object | None = None) -> str:
    """The pip index URL (``https://aws:<token>@<host>/.../simple/``) of the repository ``arn`` names."""
    parts = parse_repository_arn(arn)
    if client is None:
        import boto3

        client = boto3.client("codeartifact", region_name=parts["region"])
    token = client.get_authorization_token(domain=parts["domain"], domainOwner=parts["owner"],
                                           durationSeconds=TOKEN_SECONDS)["authorizationToken"]
    endpoint = client.get_repository_endpoint(domain=parts["domain"], domainOwner=parts["owner"],
                                              repository=parts["repository"], format="pypi")["repositoryEndpoint"]
    address = urlsplit(endpoint)
    return f"{address.scheme}://aws:{token}@{address.netloc}{address.path.rstrip('/')}/simple/"


def main(argv: list[str] | None = None) -> int:
    del argv
    try:
        print(index_url(os.environ.get(ENVIRONMENT_VARIABLE, "")))
    except MirrorError as error:
        print(f"package_index: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
