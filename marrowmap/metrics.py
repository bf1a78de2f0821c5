"""Prometheus metrics of the listener and the workers (prometheus-client, the Prometheus project's own
Python client: text exposition, histograms and a multi-process mode for Celery's prefork pool).

Events are counted where they happen (the listener's C-STORE handler and sealer, the workers'
tasks); gauges are read when Prometheus scrapes: queue depth and broker health from Redis, free
spool space from the file system, and (listener only, so that a dashboard sums no duplicates)
jobs by state from the job store.

A worker's tasks run in pool processes: ``marrowmap worker`` sets ``PROMETHEUS_MULTIPROC_DIR``
before this module is imported, each process writes its values there, and the worker's main
process serves them all (``serve_metrics``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from marrowmap.contract import QUEUE_ANALYSIS, QUEUE_SEND
from marrowmap.jobstore import JobState, JobStore, JobStoreError
from marrowmap.settings import Settings

#: Seconds: an analysis takes ~5-60 s, building outputs ~1-20 s, a send ~0.1-30 s.
_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)

INSTANCES = Counter("marrowmap_instances_received",
                    "Instances the listener answered, by C-STORE status (success, or why it was refused).",
                    ["status"])
STUDIES_SEALED = Counter("marrowmap_studies_sealed", "Study batches sealed after the quiet period.")
STUDIES_SKIPPED = Counter("marrowmap_studies_skipped", "Sealed studies the routing declined (not a hip/pelvis MR).")
JOBS_QUEUED = Counter("marrowmap_jobs_queued", "Analysis jobs the listener handed to the broker.")
JOBS_FINISHED = Counter("marrowmap_jobs_finished",
                        "Jobs that reached a state through a worker's step (analysed, not_applicable, failed, "
                        "sent, partially_sent, send_failed).", ["state"])
ANALYSIS_SECONDS = Histogram("marrowmap_analysis_seconds",
                             "Analysis of one study, outputs included, by result status.", ["status"],
                             buckets=_BUCKETS)
OUTPUT_SECONDS = Histogram("marrowmap_output_seconds", "Building one study's DICOM outputs (SEG, SR, SC).",
                           buckets=_BUCKETS)
SEND_SECONDS = Histogram("marrowmap_send_seconds", "One attempt to send a job's results to the PACS.",
                         buckets=_BUCKETS)
SEND_ATTEMPTS = Counter("marrowmap_send_attempts", "Attempts to send a job's results to the PACS.")
SEND_FAILURES = Counter("marrowmap_send_failures",
                        "Send attempts that did not deliver everything, by what follows (retry, partially_sent, "
                        "send_failed).", ["outcome"])


class StateCollector(Collector):
    """Gauges read at scrape time: queue depth, broker up, free spool space, and optionally jobs by state."""

    def __init__(self, settings: Settings, *, jobs: bool) -> None:
        self._settings = settings
        self._broker = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)
        self._store = JobStore.from_url(settings.jobs_url, settings.job_store_prefix) if jobs else None

    def collect(self) -> Iterator[Metric]:
        """The gauges, each read now (a broker that does not answer gives broker_up 0 and no queue depth)."""
        up = GaugeMetricFamily("marrowmap_broker_up", "1 when the Redis broker answers.")
        depth = GaugeMetricFamily("marrowmap_queue_depth", "Messages waiting in a broker queue.", labels=["queue"])
        try:
            for base in (QUEUE_ANALYSIS, QUEUE_SEND):
                depth.add_metric([base], float(self._broker.llen(self._settings.queue_name(base))))
            up.add_metric([], 1.0)
        except redis.RedisError:
            up.add_metric([], 0.0)
        yield up
        yield depth
        free = GaugeMetricFamily("marrowmap_spool_free_bytes", "Free space on the spool's file system.")
        with contextlib.suppress(OSError):
            free.add_metric([], float(shutil.disk_usage(self._settings.spool_dir).free))
        yield free
        if self._store is not None:
            yield from self._jobs()

    def _jobs(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("marrowmap_jobs", "Jobs in the job store by state.", labels=["state"])
        try:
            counts = self._store.count_by_state() if self._store is not None else {}
        except JobStoreError:
            return
        for state in JobState:
            jobs.add_metric([state.value], float(counts.get(state.value, 0)))
        yield jobs


def serve_metrics(settings: Settings, port: int, *, jobs: bool) -> WSGIServer | None:
    """Serve ``/metrics`` on ``metrics_host:port`` from a daemon thread (None when ``port`` is 0).

    In a process with ``PROMETHEUS_MULTIPROC_DIR`` set (a worker), the values of all its pool
    processes are served; otherwise this process's own (with its CPU and memory).
    """
    if port == 0:
        return None
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(REGISTRY)
    registry.register(StateCollector(settings, jobs=jobs))
    server, _ = start_http_server(port, addr=settings.metrics_host, registry=registry)
    return server
