"""Every event and command on the bus, one module per domain; import them from here."""

from __future__ import annotations

from . import call, contact, desk, ivr, media, recording, routing, session, tenant, webhook, webrtc, worker
from .call import *  # noqa: F403
from .contact import *  # noqa: F403
from .desk import *  # noqa: F403
from .ivr import *  # noqa: F403
from .media import *  # noqa: F403
from .recording import *  # noqa: F403
from .routing import *  # noqa: F403
from .session import *  # noqa: F403
from .tenant import *  # noqa: F403
from .webhook import *  # noqa: F403
from .webrtc import *  # noqa: F403
from .worker import *  # noqa: F403

__all__ = [
    *call.__all__,
    *contact.__all__,
    *desk.__all__,
    *ivr.__all__,
    *media.__all__,
    *recording.__all__,
    *routing.__all__,
    *session.__all__,
    *tenant.__all__,
    *webhook.__all__,
    *webrtc.__all__,
    *worker.__all__,
]
