"""Settings every test shares."""

import os

# Spark in local mode binds to loopback, never to the machine's interfaces.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
