"""CDN purges as jobs: the built-in task ``pgsteady.cdn_purge``.

    from pgsteady.cache import purge
    purger = purge.register(app, purge.Cloudflare(zone_id="...", site="https://www.example.com"))
    purger.set_limits()                                   # once: the provider's rate, fleet-wide

    with conn.transaction():                              # the content write's own transaction
        conn.execute("UPDATE posts SET body = %s, version = version + 1 WHERE id = %s", ...)
        purger.enqueue(urls=["/posts/hello-world", "/"], keys=["post-42"], version=new_version, conn=conn)

Guarantees, and who provides them:

- never lost, never sent for a rolled-back change: the job row is written in
  the caller's transaction (``conn=``), so it commits or vanishes with it;
- idempotent per (targets, content version): the job's idempotency key is a
  hash of the sorted URLs and keys and the version, so enqueueing the same
  purge again (a retried request handler, a re-run import) returns the job
  that already exists;
- batched to the provider's limit (``url_batch``/``key_batch``), each batch
  checkpointed, so a retried attempt resumes after the last batch that went
  through instead of sending it again;
- rate-limited fleet-wide by the queue's limits (``set_limits()`` stores the
  adapter's defaults with ``App.set_queue_limits``; every worker obeys them);
- retried on 429/5xx: a Retry-After of at most PURGE_MAX_RETRY_AFTER seconds
  is waited out inside the attempt; anything longer, or none, fails the attempt
  into the job's retry with backoff (a longer one as RetryIn: never sooner than asked);
- recorded: every batch's answer goes into the job history (``ctx.log``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigError, InvalidPayload
from ...security.settings import PURGE_MAX_RETRY_AFTER, PURGE_RESPONSE_LOG_BYTES
from ...tasks import Retry, RetryIn
from .adapters import KEY, ADAPTERS, Cloudflare, Fastly, Nginx, Refused, Throttled, Varnish, from_config

TASK = "pgsteady.cdn_purge"
QUEUE = "cdn-purge"
MAX_TARGETS = 10_000
_URL = re.compile(r"^(/|https?://[A-Za-z0-9.-]+(:\d{1,5})?/)[^\s\x00-\x1f\x7f]{0,2047}$")

__all__ = ["ADAPTERS", "Cloudflare", "Fastly", "Nginx", "Purger", "TASK", "Varnish", "from_config", "purge_key", "register"]


def purge_key(urls: list[str], keys: list[str], version: str) -> str:
    """The idempotency key of one purge: the same targets at the same version are one job."""
    digest = hashlib.sha256(json.dumps([sorted(set(urls)), sorted(set(keys)), version]).encode()).hexdigest()
    return f"cdn_purge:{digest[:40]}"


@dataclass
class Purger:
    app: Any
    adapter: Any
    queue: str

    def enqueue(self, *, urls: list[str] = (), keys: list[str] = (), version: str | int, conn: Any = None) -> Any:
        """Enqueue one purge job (in ``conn``'s transaction when given); returns the JobRef."""
        urls, keys = list(dict.fromkeys(urls)), list(dict.fromkeys(keys))
        if not urls and not keys:
            raise InvalidPayload("a purge needs at least one URL or surrogate key")
        if len(urls) + len(keys) > MAX_TARGETS:
            raise InvalidPayload(f"at most {MAX_TARGETS:,} URLs and keys per purge; split it")
        bad = next((u for u in urls if not isinstance(u, str) or not _URL.match(u)), None)
        if bad is not None:
            raise InvalidPayload(f"purge URL {bad!r} must be a path (/posts/x) or http(s)://host/path, on one line")
        bad = next((k for k in keys if not isinstance(k, str) or not KEY.match(k)), None)
        if bad is not None:
            raise InvalidPayload(f"surrogate key {bad!r} must be letters, digits, '_', '.', ':' or '-' (at most 256)")
        if keys and not self.adapter.key_batch:
            raise ConfigError(f"{self.adapter.name} cannot purge by surrogate key; purge the URLs instead")
        if not isinstance(version, (str, int)) or isinstance(version, bool) or str(version) == "":
            raise InvalidPayload("version must be the content's version (a string or an integer)")
        version = str(version)
        return self.app.enqueue(TASK, {"urls": urls, "keys": keys, "version": version},
                                key=purge_key(urls, keys, version), queue=self.queue, conn=conn)

    def set_limits(self, *, max_running: int | None = None, max_per_second: int | None = None, conn: Any = None) -> None:
        """Store the queue's fleet-wide limits: the adapter's defaults unless given."""
        limits = {**self.adapter.limits}
        if max_running is not None:
            limits["max_running"] = max_running
        if max_per_second is not None:
            limits["max_per_second"] = max_per_second
        self.app.set_queue_limits(self.queue, conn=conn, **limits)


def register(app: Any, adapter: Any, *, queue: str = QUEUE, max_attempts: int = 12,
             retry: Retry = Retry(base=5, cap=900, jitter=0.25)) -> Purger:
    """Register ``pgsteady.cdn_purge`` on ``app`` with this adapter (or an adapter config mapping)."""
    if isinstance(adapter, dict):
        adapter = from_config(adapter)
    if not hasattr(adapter, "purge") or not hasattr(adapter, "url_batch"):
        raise ConfigError("adapter must be a pgsteady.cache.purge adapter (Nginx, Varnish, Fastly, Cloudflare) or a config mapping")
    if TASK in app.tasks:
        raise ConfigError(f"{TASK} is already registered on this App; call purge.register once")
    @app.task(name=TASK, queue=queue, max_attempts=max_attempts, retry=retry)
    def cdn_purge(ctx, urls: list[str] = (), keys: list[str] = (), version: str = "") -> dict[str, Any]:
        """Purge URLs and surrogate keys through the configured adapter (pgsteady/cache/purge)."""
        return _run(ctx, adapter, {"urls": list(urls), "keys": list(keys)})

    return Purger(app, adapter, queue)


def _run(ctx: Any, adapter: Any, targets: dict[str, list[str]]) -> dict[str, Any]:
    done = dict(ctx.last_checkpoint or {"urls": 0, "keys": 0})
    sent = 0
    for kind, size in (("urls", adapter.url_batch), ("keys", adapter.key_batch)):
        items = targets[kind]
        for start in range(done.get(kind, 0), len(items), max(size, 1)):
            batch = items[start:start + size]
            answer = _send(ctx, adapter, kind, batch)
            ctx.log(f"{adapter.name} purged {len(batch)} {kind[:-1] if len(batch) == 1 else kind}: HTTP {answer.status}",
                    adapter=adapter.name, kind=kind, targets=batch, status=answer.status,
                    response=answer.body[:PURGE_RESPONSE_LOG_BYTES])
            done[kind] = start + len(batch)
            ctx.checkpoint(done)  # a retried attempt resumes after this batch
            sent += 1
    return {"adapter": adapter.name, "urls": len(targets["urls"]), "keys": len(targets["keys"]), "requests": sent}


def _send(ctx: Any, adapter: Any, kind: str, batch: list[str]) -> Any:
    try:
        return adapter.purge(kind, batch)
    except Throttled as exc:
        ctx.log(f"{adapter.name} answered {exc}", adapter=adapter.name, kind=kind, targets=batch,
                status=exc.status, response=exc.body[:PURGE_RESPONSE_LOG_BYTES], retry_after=exc.retry_after)
        if exc.retry_after is None:
            raise
        if exc.retry_after > PURGE_MAX_RETRY_AFTER:  # the job's backoff, but never sooner than asked
            raise RetryIn(exc.retry_after, f"{type(exc).__name__}: {exc}") from exc
        time.sleep(exc.retry_after)  # short enough to wait out here rather than give the slot back
        return adapter.purge(kind, batch)
    except Refused as exc:
        ctx.log(f"{adapter.name} refused: {exc}", adapter=adapter.name, kind=kind, targets=batch)
        raise
