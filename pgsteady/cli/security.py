"""`pgsteady security`: the checklist, the least-privilege roles, and every security setting.

Exit codes of `security check`: 0 when no result reaches --fail-on, 1 when
one does, 2 on bad input (an option, a URL that cannot be fetched, a file
that does not exist, an unreachable database).
"""

from __future__ import annotations


import click
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..security import roles as security_roles
from ..security import settings as security_settings
from ..security.report import AREAS, FAIL, PASS, SKIP, WARN, Report
from ..security.runner import check as run_check
from .base import answer_no, clean, echo_json, json_option

_STYLE = {FAIL: "bold red", WARN: "yellow", PASS: "green", SKIP: "dim"}
def plain(value: object) -> Text:
    """Text shown as is: no rich markup, no terminal escape or bidi characters (base.clean)."""
    return Text(clean(value))


def render(report: Report, console: Console, *, verbose: bool) -> None:
    """One block per result, worst first within each area: status, check and
    subject on one line, then the finding and the fix, indented (readable on
    any width, unlike a wide table)."""
    for area in AREAS:
        rows = [r for r in report.results if r.area == area and (verbose or r.status != PASS)]
        passed = sum(r.area == area and r.status == PASS for r in report.results)
        more = f" ({passed} pass; -v shows them)" if passed and not verbose else ""
        if not rows:
            if passed:
                console.print(Text(f"{area.capitalize()}: all {passed} checks pass", style="green"))
            continue
        console.print(Text(area.capitalize(), style="bold") + Text(more, style="dim"))
        for r in rows:
            head = Text(f"  {r.status.upper():<4} ", style=_STYLE[r.status]) + Text(f"{r.check} · ", style="bold")
            console.print(head + plain(r.subject))
            console.print(Padding(plain(r.message), (0, 0, 0, 7)))
            if r.fix:
                console.print(Padding(Text("fix: ", style="dim") + plain(r.fix), (0, 0, 0, 7)))
    c = report.counts()
    console.print(plain(f"{c[FAIL]} fail, {c[WARN]} warn, {c[PASS]} pass, {c[SKIP]} skipped · role {report.role} · "
                        f"{report.database} · schema {report.schema} ({report.duration_seconds:.2f}s)"),
                  soft_wrap=True)


def register(cli: click.Group) -> None:
    @cli.group()
    def security() -> None:
        """The security checklist: permissions, secrets, headers, upload limits, logging.

        See docs/security.md for every check, every setting and its default.
        """

    @security.command("check")
    @click.option("--url", "urls", multiple=True, metavar="URL",
                  help="A page to check the headers of: the dashboard, the site's own pages (repeatable).")
    @click.option("--env-file", "env_files", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
                  help="An environment file holding secrets (KEY=value lines), checked for who can read it (repeatable).")
    @click.option("--cache-rules", type=click.Path(dir_okay=False), metavar="FILE",
                  help="The CDN's cache rules file, to compare with pages that set cookies (not compared yet; reported as skipped).")
    @click.option("--roles-prefix", metavar="P",
                  help="Prefix of the least-privilege roles to verify [default: the schema name].")
    @click.option("--probe-uploads", is_flag=True,
                  help="Announce a 1 GiB POST body to each --url (sending none) to see whether it is refused before it is read.")
    @click.option("--sample", type=int, default=security_settings.SECURITY_CHECK_SAMPLE, show_default=True,
                  help="Newest jobs and recent events whose keys (never values) are sampled for secrets.")
    @click.option("--no-processes", is_flag=True, help="Do not look at other pgsteady processes' command lines.")
    @click.option("--timeout", type=click.FloatRange(min=0.1, max=120), default=10.0, show_default=True,
                  help="Seconds to wait for each URL.")
    @click.option("--fail-on", type=click.Choice(["warn", "fail"]), default="fail", show_default=True,
                  help="Exit 1 when a result is at least this bad.")
    @click.option("-v", "--verbose", is_flag=True, help="Show the checks that pass too.")
    @json_option
    @click.pass_context
    def check_command(ctx: click.Context, urls, env_files, cache_rules, roles_prefix, probe_uploads, sample,
                      no_processes, timeout, fail_on, verbose, as_json) -> None:
        """Check the role pgsteady connects as, who else may read its tables, the server's
        authentication and logging, passwords on command lines and in files, the
        headers of each --url, and pgsteady's own limits.

        Each result is pass, warn or fail with its evidence and the fix; skip
        when it could not look (the reason says why). Secrets are never printed.
        Run it with the DSN the App uses: the role of that connection is the one
        judged.

        Exit codes: 0 when nothing reaches --fail-on, 1 when something does,
        2 on bad input (an option, a URL that cannot be fetched, a missing file,
        an unreachable database).

        \b
        Examples:
          pgsteady security check
          pgsteady security check --url https://example.org/ --url http://127.0.0.1:8080/
          pgsteady security check --env-file /etc/myapp/env --fail-on warn --json
        """
        state = ctx.obj
        report = run_check(state.resolved_dsn(), schema=state.schema, role_prefix=roles_prefix, urls=urls,
                           env_files=env_files, cache_rules=cache_rules, probe_uploads=probe_uploads,
                           sample=sample, scan_processes=not no_processes, http_timeout=timeout,
                           app=state.app(required=False))
        if as_json:
            echo_json(report.to_dict())
        else:
            render(report, Console(highlight=False), verbose=verbose)
        if report.reaches(fail_on):
            answer_no()

    @security.command("roles")
    @click.option("--prefix", metavar="P", help="Role names are P_migrate, P_worker, P_readonly [default: the schema name].")
    @click.pass_context
    def roles_command(ctx: click.Context, prefix: str | None) -> None:
        """Print the SQL that creates three least-privilege roles for the schema:
        migrate (owns it), worker (the App and workers: rows only) and readonly
        (status, dashboard). Review it, then run it as a superuser:

        \b
          pgsteady security roles > roles.sql && psql -f roles.sql "$ADMIN_DSN"

        `pgsteady security check` verifies the roles once they exist.
        """
        click.echo(security_roles.grant_sql(ctx.obj.schema, prefix), nl=False)

    @security.command("settings")
    @click.option("--markdown", is_flag=True, help="Print the table of docs/security.md.")
    @json_option
    def settings_command(markdown: bool, as_json: bool) -> None:
        """Every security-relevant setting pgsteady has, its default and why."""
        rows = security_settings.SETTINGS
        if as_json:
            echo_json([{"name": s.name, "default": s.default, "area": s.area, "why": s.why} for s in rows])
        elif markdown:
            click.echo(settings_markdown(), nl=False)
        else:
            table = Table(show_lines=True, expand=True)
            for column in ("Setting", "Default", "Area", "Why"):
                table.add_column(column, overflow="fold")
            for s in rows:
                table.add_row(plain(s.name), plain(s.default), plain(s.area), plain(s.why))
            Console().print(table)


def settings_markdown() -> str:
    """The settings table of docs/security.md, one row per Setting."""
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| setting | default | area | why |", "| --- | --- | --- | --- |"]
    for s in security_settings.SETTINGS:
        lines.append(f"| {cell(s.name)} | `{cell(s.default)}` | {cell(s.area)} | {cell(s.why)} |")
    return "\n".join(lines) + "\n"
