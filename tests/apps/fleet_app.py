"""The App of the import and limit process tests."""

from __future__ import annotations

import time

from pgsteady import App, Retry
from pgsteady.imports import run_chunks

app = App(release="fleet-test")


@app.task(name="import_rows", queue="imports", retry=Retry(base=0.05, cap=0.5))
def import_rows(ctx, total: int, chunk: int = 500, pause: float = 0.0) -> None:
    def handle(conn, rows):
        with conn.cursor().copy("COPY imported (n) FROM STDIN") as copy:
            for n in rows:
                copy.write_row((n,))
        time.sleep(pause)

    run_chunks(ctx, range(total), handle, chunk_size=chunk, total=total)


@app.task(name="hold", queue="limited", retry=Retry(base=0.05, cap=0.5))
def hold(seconds: float) -> None:
    time.sleep(seconds)
