"""Fixtures of the fault suite: a server of its own, PgBouncer, replicas, a
network namespace. Every test here carries the ``faults`` mark
(``pytest -m faults`` selects the suite, ``-m "not faults"`` leaves it out).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from ..conftest import _create_db, _drop_db
from .cluster import PGBOUNCER, Bouncer, Netns, Replica, Server

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def needs_pgbouncer() -> None:
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI"):
            pytest.fail(f"{PGBOUNCER} is missing: .ci/run installs the pgbouncer package")
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer)")


@pytest.fixture(scope="session")
def netns():
    """A namespace with a veth pair to this one, or None (see netns_reason)."""
    if Netns.available() is not None:
        yield None
        return
    ns = Netns()
    try:
        ns.create()
    except RuntimeError:
        ns.destroy()
        yield None
        return
    yield ns
    ns.mend()
    ns.destroy()


@pytest.fixture(scope="session")
def fault_server(netns):
    home = Path(tempfile.gettempdir()) / f"pgsteady-faults-{secrets.token_hex(4)}"
    server = Server(home, extra_listen=[netns.host_ip] if netns else [],
                    extra_hosts=[netns.subnet] if netns else [])
    try:
        server.create()
        yield server
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def fault_template(fault_server):
    from pgsteady.migrations import migrate

    name = f"pgsteady_ftpl_{os.getpid()}"
    migrate(_create_db(fault_server.dsn(), name))
    yield name
    fault_server.start()
    _drop_db(fault_server.dsn(), name)


@pytest.fixture
def fault_db(fault_server, fault_template):
    """A fresh migrated database on the suite's server; its name."""
    name = f"f_{uuid.uuid4().hex[:12]}"
    _create_db(fault_server.dsn(), name, template=fault_template)
    with psycopg.connect(fault_server.dsn(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE effects (n integer NOT NULL, job_id bigint NOT NULL, attempt integer NOT NULL,"
                     " at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute("CREATE TABLE counters (n integer PRIMARY KEY, v integer NOT NULL DEFAULT 0)")
    yield name
    fault_server.start()  # a test that stopped it may have failed before starting it again
    _drop_db(fault_server.dsn(), name)


def _bouncer(server: Server, mode: str, netns: Netns | None):
    needs_pgbouncer()
    b = Bouncer(server, mode, listen=[netns.host_ip] if netns else [])
    b.start()
    return b


@pytest.fixture(params=["session", "transaction"])
def bouncer(request, fault_server, netns):
    """PgBouncer in front of the suite's server, in each pool mode."""
    b = _bouncer(fault_server, request.param, netns)
    yield b
    b.stop()


@pytest.fixture
def tx_bouncer(fault_server, netns):
    """PgBouncer in transaction pool mode, the strict one."""
    b = _bouncer(fault_server, "transaction", netns)
    yield b
    b.stop()


@pytest.fixture(scope="session")
def replica(fault_server):
    """A streaming replica of the suite's server (databases made later reach it too)."""
    folder = Path(tempfile.gettempdir()) / f"pgsteady-replica-{secrets.token_hex(4)}"
    r = Replica(fault_server, folder)
    try:
        r.start()
        yield r
    finally:
        r.stop()
        shutil.rmtree(folder, ignore_errors=True)
