"""The Spark session scoring runs in: the active one (``spark-submit``, a notebook), else a
new one, ``local[*]`` unless ``master`` says otherwise."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from iipa.errors import IIPAError

DEFAULT_MASTER = "local[*]"
# Our own sessions' defaults; --conf overrides any of them.
DEFAULT_CONF = {"spark.ui.enabled": "false", "spark.sql.session.timeZone": "UTC"}


def parse_conf(pairs: Iterable[str]) -> dict[str, str]:
    """``["k=v", ...]`` (``--conf`` values, as spark-submit takes them) -> dict."""
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise IIPAError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.task.cpus=2")
        out[key.strip()] = value
    return out


def get_session(master: str | None = None, conf: dict[str, str] | None = None):
    """(session, created): the active session as it is, or a new one that the caller stops.

    Under ``spark-submit`` (a JVM is already waiting for this Python process) the master
    comes from spark-submit unless ``master`` is given.
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
    builder = SparkSession.builder.appName("iipa-score")
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or DEFAULT_MASTER)
    for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # no Java, a bad master URL, a refused --conf value
        raise IIPAError(f"could not start Spark ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    session.sparkContext.setLogLevel("ERROR")
    return session, True
