"""The operator console at ``/console``: the tenants, their steps live, and the buttons an operator
needs (create, retry, cancel, delete), served by the API process itself.

Server-rendered pages (Jinja2) with one small script and one stylesheet, all served by the app:
it works offline and needs no front-end build. Logins are signed cookies and every form carries a
CSRF token (``api.console.auth``); pages are computed from mirror rows (``api.console.views``);
``api.console.routes.install`` adds it all to the app.
"""

from api.console.routes import install

__all__ = ["install"]
