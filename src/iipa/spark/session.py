"""The Spark session iipa runs in (``iipa score`` and ``iipa pairs build`` with ``--engine
spark``): the active one (``spark-submit``, a notebook), else a new one, ``local[*]`` unless
``master`` says otherwise, with ``--conf`` over iipa's defaults."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from iipa.errors import IIPAError

DEFAULT_MASTER = "local[*]"
# Our own sessions' defaults; --conf overrides any of them.
DEFAULT_CONF = {"spark.ui.enabled": "false", "spark.sql.session.timeZone": "UTC"}
# A local session's JVM only lists, shuffles and writes paths and scores (microseconds a row
# against milliseconds an image in the Python workers), yet C2's compiler threads and G1's
# took ~30 % of a core during a job and 5 s of CPU in the first one, on the cores the workers
# decode on. C1 alone and the serial collector: the first job ~2 s shorter, the same job
# later ~8 % (benchmarks/spark_score.py). Only for local masters: a cluster's driver has its
# own machine. ``spark.driver.defaultJavaOptions`` is prepended to ``extraJavaOptions``, so
# a user's JVM options still apply (and a --conf of it replaces ours).
LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def parse_conf(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` (``--conf`` values, as spark-submit takes them) -> dict."""
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise IIPAError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.task.cpus=2")
        out[key.strip()] = value
    return out


def session_conf(master: str | None, conf: dict[str, str] | None, *, submitted: bool = False,
                 defaults: dict[str, str] | None = None, local_java: bool = True) -> dict[str, str]:
    """What a new session is built with: ``spark.master`` (unless ``submitted`` by spark-submit
    without a ``master``), :data:`DEFAULT_CONF` and the caller's ``defaults``, then ``conf``
    over them. A local master's JVM gets :data:`LOCAL_JAVA_OPTIONS` when ``local_java``
    (effective when this session starts the JVM: a notebook's JVM keeps the options it
    started with)."""
    out = {**DEFAULT_CONF, **(defaults or {})}
    if master or not submitted:
        out["spark.master"] = master = master or DEFAULT_MASTER
        if local_java and master.startswith("local"):
            out["spark.driver.defaultJavaOptions"] = LOCAL_JAVA_OPTIONS
    return {**out, **(conf or {})}


def get_session(master: str | None = None, conf: dict[str, str] | None = None, *, app: str = "iipa-score",
                defaults: dict[str, str] | None = None, local_java: bool = True):
    """(session, created): the active session as it is, or a new one that the caller stops.

    Under ``spark-submit`` (a JVM is already waiting for this Python process) the master
    comes from spark-submit unless ``master`` is given. ``app``, ``defaults`` and
    ``local_java``: see :func:`session_conf` (each command's own session).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise IIPAError("--engine spark needs pyspark: pip install 'iipa[spark]' (and Java 17)") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app)
    settings = session_conf(master, conf, submitted="PYSPARK_GATEWAY_PORT" in os.environ, defaults=defaults,
                            local_java=local_java)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # no Java, a bad master URL, a refused --conf value
        raise IIPAError(f"could not start Spark ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    session.sparkContext.setLogLevel("ERROR")
    return session, True
