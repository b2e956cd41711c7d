"""Structured logs: every line written while a job runs carries its id, task, attempt and release."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from pgsteady.errors import ConfigError
from pgsteady.monitoring import logs


@pytest.fixture
def capture():
    """configure() on a string stream; the root logger is put back afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()

    def lines() -> list[str]:
        return stream.getvalue().splitlines()

    yield stream, lines
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def test_json_lines_name_the_job_in_concurrent_tasks_and_task_threads(capture):
    stream, lines = capture
    logs.configure("json", stream=stream)
    task_log = logging.getLogger("myproject.jobs")
    pool = ThreadPoolExecutor(2)

    def sync_body(n: int) -> None:
        task_log.info("sync part of %d", n)

    async def run(job_id: int, attempt: int) -> None:
        # What the worker does around each attempt.
        with logs.job_context(job_id, "myproject.jobs.send", attempt, "2026.11.28"):
            task_log.info("sending %d", job_id)
            await asyncio.sleep(0.01)  # the other job runs meanwhile
            await asyncio.get_running_loop().run_in_executor(pool, logs.in_current_context(lambda: sync_body(job_id)))
            logging.getLogger("pgsteady.worker").warning("job %s done", job_id)

    async def main() -> None:
        await asyncio.gather(run(1, 1), run(2, 3))

    asyncio.run(main())
    logging.getLogger("pgsteady.worker").info("idle")
    records = [json.loads(line) for line in lines()]
    assert len(records) == 7
    for r in records[:-1]:
        job = int(re.search(r"\d+", r["message"]).group())
        assert (r["job_id"], r["task"], r["attempt"], r["release"]) == (job, "myproject.jobs.send", 2 * job - 1,
                                                                       "2026.11.28"), r
    assert {r["message"] for r in records} >= {"sync part of 1", "sync part of 2", "job 2 done"}
    assert records[-1]["message"] == "idle" and "job_id" not in records[-1]
    assert records[0]["time"].endswith("+00:00") and records[0]["level"] == "info"
    assert records[0]["logger"] == "myproject.jobs"


def test_json_keeps_extra_fields_and_the_traceback(capture):
    stream, lines = capture
    logs.configure("json", stream=stream)
    log = logging.getLogger("t")
    with logs.job_context(5, "t", 1):
        try:
            raise ValueError("bad row")
        except ValueError:
            log.exception("import failed", extra={"row": 17})
    [record] = [json.loads(line) for line in lines()]
    assert record["row"] == 17 and record["job_id"] == 5 and "release" not in record
    assert record["exception"].startswith("Traceback") and "ValueError: bad row" in record["exception"]
    assert record["level"] == "error"


def test_text_lines_get_the_job_tags(capture):
    stream, lines = capture
    logs.configure("text", stream=stream)
    with logs.job_context(42, "send", 2, "r7"):
        logging.getLogger("t").warning("slow mail server")
    logging.getLogger("t").warning("outside")
    inside, outside = lines()
    assert inside.endswith("t: slow mail server [job_id=42 task=send attempt=2 release=r7]")
    assert outside.endswith("t: outside")


def test_an_unknown_log_format_is_one_clear_error():
    with pytest.raises(ConfigError, match="log format 'xml' is not known; use text or json"):
        logs.configure("xml")


def test_current_job_is_only_set_inside_the_block():
    assert logs.current_job() is None
    with logs.job_context(1, "t", 1, None):
        assert logs.current_job() == {"job_id": 1, "task": "t", "attempt": 1, "release": None}
    assert logs.current_job() is None


def test_log_lines_never_carry_a_password_or_a_forged_line():
    import logging

    from pgsteady.monitoring.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord("x", logging.WARNING, __file__, 0,
                               "cannot connect to postgresql://app:hunter2@db/prod\n2026-01-01 ERROR forged: %s",
                               ("line",), None)
    record.api_token = "hunter2"
    record.path = "dsn password=hunter2 host=db"
    text = TextFormatter().format(record)
    assert "hunter2" not in text and len(text.splitlines()) == 1 and "\\n2026-01-01 ERROR forged" in text
    data = json.loads(JsonFormatter().format(record))
    assert "hunter2" not in json.dumps(data) and data["api_token"] != "hunter2"
