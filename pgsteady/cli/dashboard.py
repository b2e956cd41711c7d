"""`pgsteady dashboard`: the web dashboard, on 127.0.0.1 unless authentication is configured."""

from __future__ import annotations

import signal

import click

from ..errors import ConfigError
from ..security.settings import DASHBOARD_HOST, DASHBOARD_MASKED_KEYS, DASHBOARD_SESSION_SECONDS


def register(cli: click.Group) -> None:
    @cli.command("dashboard")
    @click.option("--host", default=DASHBOARD_HOST, show_default=True,
                  help="Address to listen on; anything but loopback needs --password-hash or --token.")
    @click.option("--port", type=click.IntRange(0, 65535), default=8188, show_default=True,
                  envvar="PGSTEADY_DASHBOARD_PORT")
    @click.option("--password-hash", envvar="PGSTEADY_DASHBOARD_PASSWORD_HASH", metavar="HASH",
                  help="scrypt hash of the login password (make one with --hash-password) "
                       "[env PGSTEADY_DASHBOARD_PASSWORD_HASH].")
    @click.option("--token", envvar="PGSTEADY_DASHBOARD_TOKEN", metavar="TOKEN", show_envvar=False,
                  help="A login token (prefer the environment: PGSTEADY_DASHBOARD_TOKEN).")
    @click.option("--user", default="admin", show_default=True, help="The name logins are recorded under.")
    @click.option("--secret-key", envvar="PGSTEADY_DASHBOARD_SECRET", metavar="KEY",
                  help="Signs session cookies, so logins survive a restart [env PGSTEADY_DASHBOARD_SECRET]; "
                       "default: random per process.")
    @click.option("--read-only", is_flag=True, help="Hide and refuse every action.")
    @click.option("--mask-keys", envvar="PGSTEADY_DASHBOARD_MASK_KEYS", default=DASHBOARD_MASKED_KEYS,
                  metavar="REGEX", help="Keys whose values are masked in job arguments [env PGSTEADY_DASHBOARD_MASK_KEYS].")
    @click.option("--session-hours", type=click.FloatRange(0.05, 24 * 30), default=DASHBOARD_SESSION_SECONDS / 3600,
                  show_default=True, help="How long a login lasts.")
    @click.option("--secure-cookies", is_flag=True, help="Mark the session cookie Secure (behind HTTPS).")
    @click.option("--hash-password", is_flag=True, help="Ask for a password, print its hash for --password-hash, exit.")
    @click.pass_obj
    def dashboard_cmd(state, host, port, password_hash, token, user, secret_key, read_only, mask_keys,
                      session_hours, secure_cookies, hash_password) -> None:
        """Serve the web dashboard: overview, queues, jobs, workers, schedules, indexes, changes, deploys.

        Bound to 127.0.0.1 by default. On any other address it refuses to start
        without a password hash or a token.
        """
        from ..dashboard.security import Auth, check_password_hash, hash_password as make_hash, is_loopback
        if hash_password:
            password = click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
            click.echo(make_hash(password))
            return
        if password_hash:
            check_password_hash(password_hash)
        if token is not None and len(token) < 16:
            raise ConfigError("the dashboard token must be at least 16 characters")
        auth = Auth(password_hash=password_hash, token=token, user=user)
        if not is_loopback(host) and not auth.required:
            raise ConfigError(f"refusing to serve the dashboard on {host} without authentication: set "
                              "PGSTEADY_DASHBOARD_PASSWORD_HASH (from `pgsteady dashboard --hash-password`) or "
                              "PGSTEADY_DASHBOARD_TOKEN, or listen on 127.0.0.1")
        import uvicorn

        from ..dashboard import Config, create_app
        app = create_app(config=Config(dsn=state.resolved_dsn(), schema=state.schema, auth=auth, read_only=read_only,
                                       mask_keys=mask_keys, secret_key=secret_key,
                                       session_seconds=int(session_hours * 3600), https_only=secure_cookies))
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                                server_header=False, proxy_headers=False, timeout_keep_alive=5,
                                limit_concurrency=64)
        server = uvicorn.Server(config)
        click.echo(f"dashboard on http://{host}:{port}/ ({'read-only, ' if read_only else ''}"
                   f"{'login required' if auth.required else 'no login: loopback only'}); Ctrl-C stops", err=True)
        # uvicorn stops gracefully on SIGINT/SIGTERM and then re-raises the
        # signal to the handlers it found: ours make that a clean exit 0.
        signal.signal(signal.SIGTERM, _stop)
        try:
            server.run()
        except (KeyboardInterrupt, _Stopped):
            pass
        finally:
            app.dashboard.close()


class _Stopped(Exception):
    pass


def _stop(signum, frame) -> None:
    raise _Stopped
