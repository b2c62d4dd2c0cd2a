"""`invite-batch ui`: a local web page over the same engine as `invite-batch run` (SPEC §11)."""

from .app import create_app
from .server import UiServer, serve

__all__ = ["UiServer", "create_app", "serve"]
