"""The web dashboard: `pgsteady dashboard`, or mount it in your own ASGI site.

    from pgsteady.dashboard import create_app, Auth, hash_password
    app = create_app("postgresql://...", auth=Auth(password_hash=hash_password("...")))

Server-rendered pages (Starlette + Jinja2), every asset inside the package,
readable without JavaScript; see docs/dashboard.md.
"""

from .app import Config, create_app
from .security import Auth, hash_password

__all__ = ["Auth", "Config", "create_app", "hash_password"]
