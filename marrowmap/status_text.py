"""``marrowmap status`` for people: a job's table rows, and one job's summary (``--json`` gives the raw record)."""

from __future__ import annotations

from typing import Any

from marrowmap.jobstore import JobRecord, JobState
from marrowmap.settings import Settings
from service.spool import results_dir

#: States in which a job's results are (or were to be) on their way to the PACS.
SEND_STATES = frozenset({JobState.SENDING, JobState.SEND_FAILED, JobState.PARTIALLY_SENT})
_PAD = " " * 34


def series_text(series: list[dict[str, Any]]) -> str:
    """``COR STIR (MR, 18), AX T2 FS (MR, 16)``: each series' description (or number), modality and images."""
    parts = []
    for s in series:
        name = s.get("series_description") or (f"#{s['series_number']}" if s.get("series_number") else "(no description)")
        parts.append(f"{name} ({s.get('modality', '?')}, {s.get('instance_count', '?')})")
    return ", ".join(parts)


def destination(record: JobRecord, settings: Settings) -> str:
    """Where the job's results go: the PACS of its last send report, else the configured one."""
    reported = record.send.get("report", {}).get("pacs") if isinstance(record.send.get("report"), dict) else None
    return str(reported or f"{settings.pacs_ae_title}@{settings.pacs_host}:{settings.pacs_port}")


def job_lines(record: JobRecord, settings: Settings, note: str = "") -> list[str]:
    """The table rows of one job."""
    count = record.instance_count if record.instance_count is not None else "-"
    lines = [f"{record.job_id:<32}  {record.state.value:<14}  {record.updated_at:%Y-%m-%d %H:%M:%S}  "
             f"{len(record.series):>6}  {count:>5}  {record.study_instance_uid}"]
    if record.series:
        lines.append(f"{_PAD}series: {series_text(record.series)}")
    steps = sorted(record.times.items(), key=lambda item: item[1])
    if len(steps) > 1:
        lines.append(_PAD + " -> ".join(f"{state} {at:%H:%M:%S}" for state, at in steps))
    if record.reason:
        lines.append(f"{_PAD}{record.reason}")
    if record.state in SEND_STATES:
        lines.append(f"{_PAD}to {destination(record, settings)}")
    if note:
        lines.append(f"{_PAD}{note}")
    return lines


def _result_text(result: dict[str, Any]) -> list[str]:
    lines = [f"result:   {result.get('status', '?')}"
             + (f", confidence {result['confidence']}" if result.get("confidence") else "")
             + (f", {result['seconds']:.1f} s" if isinstance(result.get("seconds"), int | float) else "")]
    for side, r in sorted((result.get("sides") or {}).items()):
        if not r.get("localized"):
            text = f"not analysed ({r.get('reason', '')})"
        elif r.get("present") is None:
            text = f"withheld ({r.get('reason', '')})"
        elif r.get("present"):
            text = f"{r.get('pattern')} BME-like signal, {r.get('oedema_volume_ml', 0):.1f} mL"
        else:
            text = "no BME-like signal"
        lines.append(f"          {side} hip: {text}")
    if result.get("outputs"):
        kinds = result["outputs"]
        lines.append("outputs:  " + ", ".join(f"{k} x{kinds.count(k)}" if kinds.count(k) > 1 else k
                                               for k in dict.fromkeys(kinds)))
    return lines


def describe_job(record: JobRecord, settings: Settings) -> str:
    """One job for a person: what, from whom, the result, where it goes, and its history."""
    lines = [f"job {record.job_id}: {record.state.value} (updated {record.updated_at:%Y-%m-%d %H:%M:%S} UTC)",
             f"study:    {record.study_instance_uid or '?'}",
             f"from:     {record.calling_ae or '?'}, {record.instance_count if record.instance_count is not None else '?'}"
             f" images in {len(record.series)} series"]
    if record.series:
        lines.append(f"series:   {series_text(record.series)}")
    if record.reason:
        lines.append(f"reason:   {record.reason}")
    if record.result:
        lines += _result_text(record.result)
    if record.state in SEND_STATES or record.send:
        summary = record.send.get("summary", "")
        lines.append(f"send:     to {destination(record, settings)}" + (f": {summary}" if summary else ""))
    if record.worker:
        lines.append(f"worker:   {record.worker}")
    lines.append(f"results:  {results_dir(settings.spool_dir, record.job_id)}")
    lines.append("history:")
    lines += [f"  {change.at:%Y-%m-%d %H:%M:%S}  {change.state.value:<14}  {change.reason}" for change in record.history]
    lines.append(f"(`marrowmap status {record.job_id} --json` gives the whole record, "
                 f"`marrowmap resend {record.job_id}` retries it)")
    return "\n".join(lines)
