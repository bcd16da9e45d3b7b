"""``fathom ui``: the HTTP API and the web page (needs the ``web`` extra: FastAPI and uvicorn)."""

from fathom.web.app import create_app
from fathom.web.limits import Limits

__all__ = ["Limits", "create_app"]
