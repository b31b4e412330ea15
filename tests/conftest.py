"""Settings and fixtures every test shares."""

import os

import boto3
import pytest

# Spark in local mode binds to loopback, never to the machine's interfaces.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

#: The region every test's embedded AWS answers for.
TEST_REGION = "eu-central-1"


class EmbeddedAWSForTests:
    """An empty embedded AWS: the environment a subprocess needs to reach it, and clients for the test itself."""

    def __init__(self, endpoint_url: str):
        self.endpoint_url = endpoint_url
        self.env = {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": TEST_REGION,
        }

    def client(self, service: str):
        return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                             region_name=TEST_REGION).client(service, endpoint_url=self.endpoint_url)


@pytest.fixture(scope="module")
def embedded_aws():
    """A module's own embedded AWS, on loopback, empty whatever moto held in this process before."""
    from modelwerk.local.server import EmbeddedAWS, free_port

    server = EmbeddedAWS(port=free_port()).start()
    yield EmbeddedAWSForTests(server.endpoint_url)
    server.stop()
