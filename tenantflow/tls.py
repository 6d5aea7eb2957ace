"""One TLS context per process for every httpx client.

Building an ``ssl.SSLContext`` loads the CA bundle, which costs milliseconds of CPU; an httpx client
per service call built a new one each time and was the worker's largest CPU cost (about 30% while
provisioning at full speed, measured with py-spy). Contexts are safe to share between clients.
"""

from __future__ import annotations

import ssl
from functools import cache


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """The default verifying client context (system CAs), built once."""
    return ssl.create_default_context()
