"""OpenAI's fine-tuning API: an explicit opt-in, the client, and jobs recorded so a re-run never pays twice.

A key alone is not consent: a job starts only with COURSE_ALLOW_PAID=1. A job's id is
written next to the data it was made from, so running notebook 09 again finds the same
job instead of starting a new one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..core.storage import atomic_write_text


# --- the OpenAI fine-tuning API (only with OPENAI_API_KEY) ----------------------------------
PAID_OPT_IN = "COURSE_ALLOW_PAID"
# US dollars per million training tokens (OpenAI pricing page; check it before a real run).
TRAINING_PRICE_PER_M = {"gpt-4o-mini-2024-07-18": 3.00, "gpt-4.1-mini-2025-04-14": 5.00, "gpt-4.1-nano-2025-04-14": 1.50}
DEFAULT_OPENAI_BASE = "gpt-4o-mini-2024-07-18"


def paid_jobs_allowed() -> bool:
    """True only when the learner said so: COURSE_ALLOW_PAID=1 (or yes/true) in the environment or `.env`.

    A key alone is not consent to a fine-tuning job, which is billed per training token: a key kept in `.env`
    for chat calls must not start one when a notebook is run top to bottom, in Jupyter Lab or anywhere else.
    """
    from ..core import secrets

    secrets.load_dotenv_once()
    return os.environ.get(PAID_OPT_IN, "").strip().lower() in {"1", "yes", "true"}


def openai_client():
    """An OpenAI client for fine-tuning jobs, or None (the notebooks then skip the job).

    None when no OPENAI_API_KEY is set, when COURSE_ALLOW_PAID is not set (`paid_jobs_allowed`),
    when COURSE_LLM=local asks for the local server only, or under the network guard (`make test`).
    """
    from ..core import secrets
    from ..chat.llm import choose_backend_kind
    from ..core.start import network_guard_requested

    secrets.load_dotenv_once()
    key = secrets.get_secret("OPENAI_API_KEY")
    if not key or not paid_jobs_allowed() or choose_backend_kind() == "local" or network_guard_requested():
        return None
    from openai import OpenAI

    return OpenAI(api_key=key)


_JOB_OVER = {"failed", "cancelled"}


def recorded_job(client, record_path, made_from: dict, show=print):
    """The job already started from these inputs, or None when a new one is needed.

    Every job is paid for, so a re-run of the notebook (or a poll that timed out) must not start a
    second one. The record (`record_job`) is reused while what the job was made from matches and the
    job has not failed or been cancelled. Delete the record to force a new job.
    """
    record_path = Path(record_path)
    try:
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    except json.JSONDecodeError:
        show(f"{record_path} is not valid JSON; a new job is needed")
        return None
    if record.get("made_from") != made_from or not record.get("job_id"):
        return None
    job = client.fine_tuning.jobs.retrieve(record["job_id"])
    if job.status in _JOB_OVER:
        show(f"the recorded job {job.id} ended {job.status}; a new one is needed")
        return None
    show(f"job {job.id} ({job.status}) was started for these files already; following it (delete {record_path} to start another)")
    return job


def record_job(record_path, job, made_from: dict) -> Path:
    """Write the job id and its inputs atomically, right after the job is created."""
    return atomic_write_text(Path(record_path), json.dumps({"job_id": job.id, "made_from": made_from}, indent=2))


def poll_openai_job(client, job_id: str, every: float = 30.0, timeout: float = 3600.0, show=print):
    """Print new events until the job succeeds, fails or is cancelled; returns the final job."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(fine_tuning_job_id=job_id, limit=20).data
        for event in reversed(events):
            if event.id not in seen:
                seen.add(event.id)
                show(f"{event.created_at}  {event.level:<5} {event.message}")
        if job.status == "succeeded" or job.status in _JOB_OVER:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f} s; poll again later")
        time.sleep(every)
