"""Invoicebox partner API client: one call, POST /v3/notification/api/invite, with a static Bearer token."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

from ... import __version__
from ...http import HttpClient
from ...logs import register_secret

log = logging.getLogger(__name__)

INVITE_PATH = "/{prefix}/notification/api/invite"
PREFIXES = ("v3", "l3")  # l3: accounts registered through the business cabinet (providers/invoicebox.md)
# The API wants `AppName/1.0 (extra)`.
USER_AGENT = f"invite-batch/{__version__} (python-requests/{requests.__version__})"


@dataclass(frozen=True)
class Invitation:
    """An accepted Invoicebox invitation."""

    invitation_id: str
    request_id: str
    http_status: int
    attempts: int


class InvoiceboxClient:
    """Sends invitations; there is nothing to look up, so an unanswered one stays unknown."""

    def __init__(self, http: HttpClient, *, token: str, prefix: str = "v3") -> None:
        self._http = http
        self._path = INVITE_PATH.format(prefix=prefix)
        register_secret(token)
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def invite(self, *, partner_id: str, email: str, type: str = "email") -> Invitation:
        """Invite `email` on behalf of the integrator `partner_id`; the answer's data.id is kept as text."""
        body = {"partnerId": partner_id, "type": type, "identifier": email}
        # A refused token comes back as FatalAPIError with http_status 401; the caller stops the run on it
        # (after putting its row back to pending), since it would fail every row alike.
        reply = self._http.request("POST", self._path, mutating=True, json=body, headers=self._headers)
        invitation_id = ""
        try:
            data = reply.json()
        except ValueError:
            data = None
        found = data.get("data") if isinstance(data, dict) else None
        if isinstance(found, dict) and found.get("id") not in (None, ""):
            invitation_id = str(found["id"])
        else:
            log.warning("Invoicebox accepted the invitation of %s but sent no data.id (request id %s)",
                        email, reply.request_id or "-")
        return Invitation(invitation_id=invitation_id, request_id=reply.request_id,
                          http_status=reply.status, attempts=reply.attempts)
