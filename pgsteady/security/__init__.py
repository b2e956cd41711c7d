"""Security in one place: every security-relevant setting (settings.py), the
masking of secret-looking values, and the checklist behind `pgsteady security
check`. Other modules read their defaults from here instead of keeping their
own, so that a reviewer finds every setting in one file and in docs/security.md.

    from pgsteady.security import check
    report = check("postgresql://...", schema="pgsteady", urls=["https://example.org/"])
    for result in report.results:
        print(result.status, result.check, result.subject, result.message, result.fix)

The checklist is a table of small functions over one snapshot (runner.CHECKS):
snapshot.py, local.py and web.py read the database, the local files and the
URLs once; permissions, secrets, headers, limits and logs hold the checks of
each area; roles.py the three least-privilege roles and what they may do.
"""

# Imported on first use, not here: the core modules import settings.py from
# this package, and the checklist imports the core modules.


def check(dsn: str, **options):
    """Run the whole checklist once; see runner.check for the options."""
    from .runner import check as run

    return run(dsn, **options)
