"""Diadoc organisations as the sandbox keeps them, and the seed file they are loaded from."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stdnum.ru import inn as ru_inn

from ..errors import ConfigError

DEFAULT_SEED = Path(__file__).with_name("diadoc_orgs.json")
# CounteragentStatus values a seeded relation may start in (as seen from the own box).
RELATIONS = ("IsMyCounteragent", "IsInvitedByMe", "InvitesMe", "RejectsMe", "IsRejectedByMe")
SOCIABILITY = ("CounteragentsOnly", "AllOrganizations")
_KPP = re.compile(r"^\d{4}[\dA-Z]{2}\d{3}$")
_BOX_NAMESPACE = uuid.UUID("5b2f4f0e-6d1c-4c47-9d2e-1b5a0c0d1a00")


@dataclass(slots=True)
class Organization:
    """One organisation with one box; `to_json` gives the API's Organization object."""

    inn: str
    kpp: str
    name: str
    box: str  # BoxIdGuid
    roaming: bool = False
    branch: bool = False
    sociability: str = "CounteragentsOnly"
    org_id: str = field(default="")

    def __post_init__(self) -> None:
        self.org_id = self.org_id or str(uuid.uuid5(_BOX_NAMESPACE, "org:" + self.box))

    @property
    def key(self) -> str:
        """How the ledger names it: INN/KPP (KPP empty for an individual)."""
        return f"{self.inn}/{self.kpp}"

    def to_json(self) -> dict[str, Any]:
        return {"OrgId": self.org_id, "Inn": self.inn, "Kpp": self.kpp, "FullName": self.name,
                "ShortName": self.name,
                "Boxes": [{"BoxId": f"{uuid.UUID(self.box).hex}@diadoc.ru", "BoxIdGuid": self.box,
                           "Title": self.name}],
                "IsRoaming": self.roaming, "IsBranch": self.branch, "Sociability": self.sociability}


@dataclass(frozen=True, slots=True)
class Register:
    """A company known only to the state register (ЕГРЮЛ): no box until an invitation by INN opens one."""

    inn: str
    kpp: str
    name: str


@dataclass(slots=True)
class Seed:
    me: Organization
    organizations: list[Organization]
    relations: dict[str, str]  # counterparty BoxIdGuid → CounteragentStatus
    egrul: list[Register]
    nowhere: list[str]  # INNs in neither, listed for the docs and the tests


def new_box(inn: str, kpp: str) -> str:
    """The BoxIdGuid of a box opened by an invitation by INN: stable, so a seed replays the same ids."""
    return str(uuid.uuid5(_BOX_NAMESPACE, f"egrul:{inn}/{kpp}"))


def load_seed(path: str | Path | None = None) -> Seed:
    """The built-in seed, or one from `path`; ConfigError listing every problem."""
    p = Path(path) if path else DEFAULT_SEED
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"cannot read the Diadoc organisations file: {e.__class__.__name__}"], str(p)) from None
    except ValueError:
        raise ConfigError(["not valid JSON"], str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError(["expected a JSON object with my_organization and organizations"], str(p))
    problems: list[str] = []
    unknown = set(data) - {"_comment", "my_organization", "organizations", "egrul", "nowhere"}
    problems += [f"unknown key {k!r}" for k in sorted(unknown)]
    me = _organization(data.get("my_organization"), "my_organization", problems)
    orgs, relations = [], {}
    for i, record in enumerate(_list(data, "organizations", problems)):
        org = _organization(record, f"organizations[{i}]", problems)
        if org is None:
            continue
        orgs.append(org)
        relation = record.get("Relation")
        if relation is not None:
            if relation not in RELATIONS:
                problems.append(f"organizations[{i}]: Relation must be one of {', '.join(RELATIONS)}")
            else:
                relations[org.box] = relation
    egrul = []
    for i, record in enumerate(_list(data, "egrul", problems)):
        where = f"egrul[{i}]"
        if not isinstance(record, dict):
            problems.append(f"{where}: must be an object")
            continue
        inn, kpp = _inn(record, where, problems), _kpp(record, where, problems)
        egrul.append(Register(inn, kpp, str(record.get("FullName") or f"ИНН {inn}")))
    nowhere = [str(x) for x in _list(data, "nowhere", problems)]
    boxes = [o.box for o in ([me] if me else []) + orgs]
    if len(set(boxes)) != len(boxes):
        problems.append("a BoxIdGuid appears twice")
    on_diadoc = {o.inn for o in orgs}
    problems += [f"egrul: {r.inn} is also an organisation on Diadoc" for r in egrul if r.inn in on_diadoc]
    problems += [f"nowhere: {n} is known after all" for n in nowhere if n in on_diadoc | {r.inn for r in egrul}]
    if problems or me is None:
        raise ConfigError(problems or ["my_organization is required"], str(p))
    return Seed(me, orgs, relations, egrul, nowhere)


def _list(data: dict[str, Any], key: str, problems: list[str]) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list")
        return []
    return value


def _organization(record: Any, where: str, problems: list[str]) -> Organization | None:
    if not isinstance(record, dict):
        problems.append(f"{where}: must be an object")
        return None
    before = len(problems)
    inn, kpp = _inn(record, where, problems), _kpp(record, where, problems)
    box = str(record.get("BoxIdGuid") or uuid.uuid5(_BOX_NAMESPACE, f"{inn}/{kpp}/{where}"))
    try:
        box = str(uuid.UUID(box))
    except ValueError:
        problems.append(f"{where}: BoxIdGuid must be a GUID")
    sociability = record.get("Sociability", "CounteragentsOnly")
    if sociability not in SOCIABILITY:
        problems.append(f"{where}: Sociability must be one of {', '.join(SOCIABILITY)}")
    flags = {k: record.get(k, False) for k in ("IsRoaming", "IsBranch")}
    problems += [f"{where}: {k} must be true or false" for k, v in flags.items() if not isinstance(v, bool)]
    if len(problems) > before:
        return None
    return Organization(inn, kpp, str(record.get("FullName") or f"ИНН {inn}"), box, roaming=flags["IsRoaming"],
                        branch=flags["IsBranch"], sociability=sociability)


def _inn(record: dict[str, Any], where: str, problems: list[str]) -> str:
    inn = str(record.get("Inn") or "")
    if not ru_inn.is_valid(inn):
        problems.append(f"{where}: Inn {inn!r} is not a valid INN (10 or 12 digits, check digits)")
    return inn


def _kpp(record: dict[str, Any], where: str, problems: list[str]) -> str:
    kpp = str(record.get("Kpp") or "")
    if kpp and not _KPP.match(kpp):
        problems.append(f"{where}: Kpp {kpp!r} must be 9 characters NNNNPPNNN")
    if kpp and len(str(record.get("Inn") or "")) == 12:
        problems.append(f"{where}: an individual (12-digit INN) has no Kpp")
    return kpp
