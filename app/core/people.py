"""People and roles: who may change what a model decides about parts.

Two roles. An **operator** inspects, captures, labels and marks a verdict wrong. An
**engineer** also deploys and rolls back models, changes the threshold or the target
false-reject rate, deletes images or labels, edits classes, manages the golden set and
the people. Each person has a name and a PIN; the PIN is stored only as its scrypt hash
(memory-hard, so a stolen project.db does not give PINs away at GPU speed) with a random
salt of its own.

A project without people works as it always has, for a single user: `roles_enabled` is
False and every action is allowed (the app shows "no roles set up"). Once the first
engineer is added, roles are enforced here, in the core, so neither the command line
nor the desktop app can go around them: the store's guarded methods (deploy, ...) call
`require` with the person who signed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from app.core import audit, db
from app.core.errors import LinesideError

ENGINEER = "engineer"
OPERATOR = "operator"
ROLES = (ENGINEER, OPERATOR)
NO_ROLES_MARK = "no roles set up: everyone may do everything"

# What each role may do. Anything not listed for operators needs an engineer.
OPERATOR_ACTIONS = frozenset({"inspect", "capture", "label", "mark_wrong"})
ENGINEER_ACTIONS = OPERATOR_ACTIONS | frozenset({
    "deploy", "rollback", "retire", "override_gate", "set_threshold", "set_target", "delete_image",
    "delete_label", "edit_classes", "manage_people", "golden",
})  # fmt: skip
ACTION_WORDS = {
    "deploy": "Deploying a model", "rollback": "Rolling back a model", "retire": "Retiring a model",
    "override_gate": "Overriding the deploy gate", "set_threshold": "Changing the threshold",
    "set_target": "Changing the target false-reject rate", "delete_image": "Deleting images",
    "delete_label": "Deleting labels", "edit_classes": "Editing defect classes",
    "manage_people": "Managing people and roles", "golden": "Changing the golden set",
}  # fmt: skip

MIN_PIN_LENGTH = 4
# scrypt at n=2**14, r=8: 16 MiB and ~50 ms per try. OWASP's minimum for scrypt.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32


class PermissionDeniedError(LinesideError):
    """The person (or nobody) is not allowed to do this."""


@dataclass(frozen=True)
class Person:
    name: str
    role: str
    active: bool = True
    created_at: datetime | None = None

    @property
    def is_engineer(self) -> bool:
        return self.role == ENGINEER


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise LinesideError("A person needs a name.")
    if len(name) > 100:
        raise LinesideError("A name can be at most 100 characters long.")
    return name


def _check_role(role: str) -> str:
    role = (role or "").strip().lower()
    if role not in ROLES:
        raise LinesideError(f"Unknown role '{role}'; use engineer or operator.")
    return role


def _check_pin(pin: str) -> str:
    if pin is None or len(pin) < MIN_PIN_LENGTH:
        raise LinesideError(f"A PIN needs at least {MIN_PIN_LENGTH} characters.")
    return pin


def _kdf_string(n: int, r: int, p: int) -> str:
    return f"scrypt:n={n},r={r},p={p}"


def _parse_kdf(kdf: str) -> tuple[int, int, int]:
    name, _, params = kdf.partition(":")
    if name != "scrypt":
        raise LinesideError(f"Unknown PIN hash '{name}' in this project; update Lineside.")
    values = dict(part.split("=") for part in params.split(","))
    return int(values["n"]), int(values["r"]), int(values["p"])


def hash_pin(pin: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    digest = hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20),
                            dklen=KEY_BYTES)
    return digest.hex()


def _person(row: sa.RowMapping) -> Person:
    return Person(row["name"], row["role"], bool(row["active"]), row["created_at"])


def people(store, include_inactive: bool = False) -> list[Person]:
    table = db.people
    query = sa.select(table).order_by(table.c.id)
    if not include_inactive:
        query = query.where(table.c.active.is_(True))
    with store._read() as conn:
        return [_person(row) for row in conn.execute(query).mappings()]


def _row(conn: sa.Connection, name: str) -> sa.RowMapping | None:
    return conn.execute(sa.select(db.people).where(db.people.c.name_key == _key(name))).mappings().first()


def _engineers(conn: sa.Connection) -> int:
    table = db.people
    return int(conn.scalar(sa.select(sa.func.count()).select_from(table).where(
        table.c.role == ENGINEER, table.c.active.is_(True))) or 0)


def roles_enabled(store) -> bool:
    """True once the project has an (active) engineer: from then on roles are enforced."""
    with store._read() as conn:
        return _engineers(conn) > 0


def roles_mark(store) -> str:
    """A short line for the status bar: who may do what in this project."""
    if not roles_enabled(store):
        return NO_ROLES_MARK
    n = len(people(store))
    return f"roles enforced ({n} {'person' if n == 1 else 'people'})"


def _actor_name(actor: Person | str | None) -> str | None:
    if actor is None:
        return None
    return actor.name if isinstance(actor, Person) else str(actor)


def require(store, actor: Person | str | None, action: str, conn: sa.Connection | None = None) -> Person | None:
    """The person, as the project knows them now, if they may do *action*; else
    PermissionDeniedError. None when no roles are set up (everything is allowed).

    The role is looked up afresh, so someone demoted or removed loses the right at once,
    whatever an older sign-in said.
    """
    if conn is None:
        with store._read() as read:
            return require(store, actor, action, read)
    if _engineers(conn) == 0:
        return None
    allowed = OPERATOR_ACTIONS if action in OPERATOR_ACTIONS else ENGINEER_ACTIONS
    doing = ACTION_WORDS.get(action, f"'{action}'")
    name = _actor_name(actor)
    if not name:
        raise PermissionDeniedError(
            f"{doing} needs {'an engineer' if action not in OPERATOR_ACTIONS else 'someone signed in'}; "
            "nobody is signed in. Sign in (on the command line: --user NAME, PIN from the prompt or "
            "LINESIDE_PIN) and try again.")
    row = _row(conn, name)
    if row is None or not row["active"]:
        raise PermissionDeniedError(f"'{name}' is not a person of this project (or was removed); nothing was done.")
    person = _person(row)
    if action not in allowed or (action not in OPERATOR_ACTIONS and person.role != ENGINEER):
        raise PermissionDeniedError(
            f"{doing} needs an engineer; {person.name} is an {person.role}. Ask an engineer to do it; "
            "nothing was done.")
    return person


def sign_in(store, name: str, pin: str) -> Person:
    """The person if the PIN is theirs; PermissionDeniedError otherwise. Both are audited."""
    with store._write() as conn:
        row = _row(conn, name or "")
        ok = False
        if row is not None and row["active"]:
            n, r, p = _parse_kdf(row["kdf"])
            ok = hmac.compare_digest(hash_pin(pin or "", bytes.fromhex(row["salt"]), n, r, p), row["pin_hash"])
        else:
            hash_pin(pin or "", b"\0" * SALT_BYTES)  # the same time whether or not the name exists
        if ok:
            audit.append(conn, audit.SIGN_IN, row["name"], {"role": row["role"]})
            return _person(row)
        audit.append(conn, audit.SIGN_IN_FAILED, str(name or ""), {"reason": "wrong name or PIN"})
    raise PermissionDeniedError(f"Wrong name or PIN for '{name}'; nothing was done.")


def add_person(store, name: str, role: str, pin: str, actor: Person | str | None = None) -> Person:
    """Add a person. The first engineer switches roles on; after that only an engineer adds people."""
    name, role, pin = _clean_name(name), _check_role(role), _check_pin(pin)
    salt = secrets.token_bytes(SALT_BYTES)
    pin_hash = hash_pin(pin, salt)  # slow on purpose: outside the write lock
    with store._write() as conn:
        by = require(store, actor, "manage_people", conn)
        if _row(conn, name) is not None:
            raise LinesideError(f"There is already a person called '{name}' in this project.")
        conn.execute(db.people.insert().values(
            name=name, name_key=_key(name), role=role, pin_hash=pin_hash, salt=salt.hex(),
            kdf=_kdf_string(SCRYPT_N, SCRYPT_R, SCRYPT_P), active=True, created_at=datetime.now(timezone.utc)))
        audit.append(conn, audit.PERSON_ADDED, by.name if by else _actor_name(actor) or name,
                     {"name": name, "role": role})
        return _person(_row(conn, name))


def _last_engineer_guard(conn: sa.Connection, row: sa.RowMapping, doing: str) -> None:
    if row["role"] == ENGINEER and row["active"] and _engineers(conn) == 1:
        raise LinesideError(
            f"{row['name']} is the last engineer; {doing} would leave nobody who may deploy or manage "
            "people. Add another engineer first.")


def set_role(store, name: str, role: str, actor: Person | str | None) -> Person:
    role = _check_role(role)
    with store._write() as conn:
        by = require(store, actor, "manage_people", conn)
        row = _row(conn, name)
        if row is None or not row["active"]:
            raise LinesideError(f"There is no person called '{name}' in this project.")
        if row["role"] == role:
            return _person(row)
        _last_engineer_guard(conn, row, f"making them an {role}")
        conn.execute(db.people.update().where(db.people.c.id == row["id"]).values(role=role))
        audit.append(conn, audit.ROLE_CHANGE, by.name if by else _actor_name(actor),
                     {"name": row["name"], "from": row["role"], "to": role})
        return _person(_row(conn, name))


def set_pin(store, name: str, pin: str, actor: Person | str | None) -> None:
    """A new PIN: by an engineer, or by the person themself (signed in with the old one)."""
    pin = _check_pin(pin)
    salt = secrets.token_bytes(SALT_BYTES)
    pin_hash = hash_pin(pin, salt)
    with store._write() as conn:
        row = _row(conn, name)
        if row is None or not row["active"]:
            raise LinesideError(f"There is no person called '{name}' in this project.")
        if _key(_actor_name(actor) or "") != row["name_key"]:
            require(store, actor, "manage_people", conn)
        conn.execute(db.people.update().where(db.people.c.id == row["id"]).values(
            pin_hash=pin_hash, salt=salt.hex(), kdf=_kdf_string(SCRYPT_N, SCRYPT_R, SCRYPT_P)))
        audit.append(conn, "pin_change", _actor_name(actor) or "", {"name": row["name"]})


def remove_person(store, name: str, actor: Person | str | None) -> None:
    """Take away a person's access; the row stays (the audit trail names them)."""
    with store._write() as conn:
        by = require(store, actor, "manage_people", conn)
        row = _row(conn, name)
        if row is None or not row["active"]:
            raise LinesideError(f"There is no person called '{name}' in this project.")
        _last_engineer_guard(conn, row, "removing them")
        conn.execute(db.people.update().where(db.people.c.id == row["id"]).values(active=False))
        audit.append(conn, audit.PERSON_REMOVED, by.name if by else _actor_name(actor), {"name": row["name"]})


# -- guarded changes that have no store method of their own ------------------------------


def set_false_reject_target(store, target: float, actor: Person | str | None) -> None:
    """The target false-reject rate the next training sets its threshold for."""
    target = float(target)
    if not 0.0 < target < 0.5:
        raise LinesideError(f"A target false-reject rate must lie between 0 and 0.5 (e.g. 0.01), not {target}.")
    with store._write() as conn:
        by = require(store, actor, "set_target", conn)
        before = store.get_setting("false_reject_target")
        store.set_setting("false_reject_target", target)
        audit.append(conn, audit.TARGET, by.name if by else _actor_name(actor), {"from": before, "to": target})


def set_model_threshold(store, version: str, threshold: float, actor: Person | str | None) -> None:
    """Change a model's stored threshold (the score at and above which a part FAILs)."""
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise LinesideError(f"A threshold must lie between 0 and 1, not {threshold}.")
    model = store.model(version)
    with store._write() as conn:
        by = require(store, actor, "set_threshold", conn)
        conn.execute(db.model_versions.update().where(db.model_versions.c.version == version)
                     .values(threshold=threshold))
        audit.append(conn, audit.THRESHOLD, by.name if by else _actor_name(actor),
                     {"version": version, "from": model.threshold, "to": threshold})
