"""The Spark session iipa runs in (``iipa score`` and ``iipa pairs build`` with ``--engine
spark``): the active one (``spark-submit``, a notebook), else a new one, ``local[*]`` unless
``master`` says otherwise, with ``--conf`` over iipa's defaults.

A session iipa starts is as quiet as the local commands: its JVM logs errors only
(:data:`LOG4J_CONFIG`; ``IIPA_DEBUG=1``: Spark's usual warnings), Spark's console progress
bar shows only on a terminal (where Spark clears it when a job ends, before iipa's summary),
and PySpark's warning about pandas 3 is silenced in the driver and in the Python workers:
PySpark 4 declares pandas >= 2.2 without an upper bound and the Spark paths iipa uses
(``mapInPandas``, ``toPandas``, ``createDataFrame``) are tested with pandas 3 here, so the
warning says nothing a user can act on.

A JVM the session starts itself maps the class-data archive of :mod:`iipa.spark.classcache`
(or records it, once per machine), and is started once more without it if it fails to start
with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from iipa.errors import IIPAError

DEFAULT_MASTER = "local[*]"
# Our own sessions' defaults; --conf overrides any of them.
DEFAULT_CONF = {"spark.ui.enabled": "false", "spark.sql.session.timeZone": "UTC"}
LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
# Matched at the start of the message (a literal, as PYTHONWARNINGS matches).
PANDAS_WARNING = "PySpark does not yet fully support pandas"
QUIET_LEVEL, DEBUG_LEVEL = "ERROR", "WARN"
# Java 17 prints this when Spark's launcher adds jdk.incubator.vector; no JVM option hides it.
JVM_NOTICE = re.compile(rb"WARNING: Using incubator modules: [^\n]*\n")
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
    over them. A local master's JVM gets :data:`LOCAL_JAVA_OPTIONS` when ``local_java``, and
    a JVM this session starts logs through :data:`LOG4J_CONFIG` (both effective only when this
    session starts the JVM: a notebook's JVM keeps the options it started with)."""
    out = {**DEFAULT_CONF, **quiet_conf(), **(defaults or {})}
    java = []
    if master or not submitted:
        out["spark.master"] = master = master or DEFAULT_MASTER
        if local_java and master.startswith("local"):
            java.append(LOCAL_JAVA_OPTIONS)
    if not submitted:  # spark-submit started the driver's JVM already, with its own logging
        java += [f"-Dlog4j.configurationFile={LOG4J_CONFIG.as_uri()}", f"-Diipa.log4j.level={log_level()}"]
    if java:
        out["spark.driver.defaultJavaOptions"] = " ".join(java)
    return {**out, **(conf or {})}


def log_level() -> str:
    """The JVM's log level: errors only, Spark's warnings too under ``IIPA_DEBUG=1``."""
    from iipa.errors import debug

    return DEBUG_LEVEL if debug() else QUIET_LEVEL


def quiet_conf() -> dict[str, str]:
    """Spark's console progress bar on a terminal only; the pandas-3 warning off in the workers."""
    workers = os.environ.get("PYTHONWARNINGS", "")
    ignore = f"ignore:{PANDAS_WARNING}:FutureWarning"
    return {"spark.ui.showConsoleProgress": "true" if _stderr_is_a_terminal() else "false",
            "spark.executorEnv.PYTHONWARNINGS": f"{workers},{ignore}" if workers else ignore}


def _stderr_is_a_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def silence_pandas_warning() -> None:
    """PySpark's pandas-3 FutureWarning, off in this process (see the module doc)."""
    warnings.filterwarnings("ignore", message=PANDAS_WARNING, category=FutureWarning)


def get_session(master: str | None = None, conf: dict[str, str] | None = None, *, app: str = "iipa-score",
                defaults: dict[str, str] | None = None, local_java: bool = True):
    """(session, created): the active session as it is, or a new one that the caller stops.

    Under ``spark-submit`` (a JVM is already waiting for this Python process) the master
    comes from spark-submit unless ``master`` is given. ``app``, ``defaults`` and
    ``local_java``: see :func:`session_conf` (each command's own session).
    """
    silence_pandas_warning()  # before pyspark's import, which warns too
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise IIPAError("--engine spark needs pyspark: pip install 'iipa[spark]' (and Java 17)") from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark import SparkContext

    from iipa.spark import classcache

    settings = session_conf(master, conf, submitted="PYSPARK_GATEWAY_PORT" in os.environ, defaults=defaults,
                            local_java=local_java)
    cds = classcache.Plan()
    if SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ \
            and "spark.driver.defaultJavaOptions" not in (conf or {}):  # a JVM this session starts, with our options
        cds = classcache.plan()
    try:
        session = _start(app, settings, cds.options)
    except Exception as exc:  # no Java, a bad master URL, a refused --conf value
        classcache.failed(cds)
        session = None
        if cds.archive is not None:  # perhaps a damaged archive: once more without it
            with contextlib.suppress(Exception):
                session = _start(app, settings, "")
        if session is None:
            raise IIPAError(f"could not start Spark ({exc.__class__.__name__}: {str(exc).splitlines()[0]})") from None
    else:
        classcache.started(cds)
    session.sparkContext.setLogLevel(log_level())
    return session, True


def _start(app: str, settings: dict[str, str], class_cache_options: str):
    """A new session from ``settings``, :mod:`classcache`'s options appended to the JVM's."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app)
    options = " ".join(filter(None, [settings.get("spark.driver.defaultJavaOptions", ""), class_cache_options]))
    for key, value in {**settings, "spark.driver.defaultJavaOptions": options}.items():
        if value or key != "spark.driver.defaultJavaOptions":
            builder = builder.config(key, value)
    with _jvm_notice_dropped():
        return builder.getOrCreate()


@contextlib.contextmanager
def _jvm_notice_dropped() -> Iterator[None]:
    """While a new JVM starts, hand it a stderr that is a pipe into this process, which passes
    everything on to the real stderr but :data:`JVM_NOTICE` (the JVM and its Python workers
    keep that pipe for life; this process gets its own stderr back at once). Nothing changes
    where a JVM runs already, or under ``IIPA_DEBUG=1``."""
    from pyspark import SparkContext

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ or log_level() == DEBUG_LEVEL:
        yield
        return
    try:
        sys.stderr.flush()
        read, write = os.pipe()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    threading.Thread(target=_forward, args=(read, saved), name="iipa-jvm-stderr", daemon=True).start()
    os.dup2(write, 2)
    os.close(write)
    try:
        yield
    finally:
        os.dup2(saved, 2)


def _forward(read: int, out: int) -> None:
    with contextlib.suppress(OSError):
        while data := os.read(read, 1 << 16):
            data = JVM_NOTICE.sub(b"", data)
            while data:
                data = data[os.write(out, data):]
    os.close(read)
