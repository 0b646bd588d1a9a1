"""The audit trail: who changed what, and when, in a form that shows tampering.

Every change a quality manager may ask about (a label, a deploy or rollback, a gate
override, a threshold change, a deletion, a role change, a sign-in) appends one row to
the `audit_log` table: who, when, what (JSON). Rows are never updated or deleted
(SQLite triggers refuse it), and each row carries the SHA-256 of the previous row's
canonical form, so a row edited with a plain SQL tool, or one inserted or deleted in
the middle, breaks the chain at that row and `verify` names it.

What the chain cannot show on its own: the newest rows cut off the end (the rest is
still a valid chain). `verify` reports the head hash and the number of rows; write them
down (a shift report, a signed e-mail) and a later check against them catches that too.

An entry is appended inside the transaction of the change it records, so the two
commit together or not at all, and appends are serialised by the write lock (SQLite's
BEGIN IMMEDIATE), so the chain has one order even with several programs writing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from app.core import db

GENESIS = "0" * 64  # the "previous hash" of the first row

# Actions, one word each (the `action` column). Callers may use others; these are the
# ones Lineside writes.
LABEL = "label"
LABEL_UNDO = "label_undo"
DEPLOY = "deploy"
ROLLBACK = "rollback"
RETIRE = "retire"
GATE = "deploy_gate"
GATE_OVERRIDE = "gate_override"
GATE_REFUSED = "gate_refused"
THRESHOLD = "threshold_change"
TARGET = "false_reject_target_change"
DELETE_IMAGE = "delete_image"
DELETE_LABEL = "delete_label"
PERSON_ADDED = "person_added"
ROLE_CHANGE = "role_change"
PERSON_REMOVED = "person_removed"
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_OUT = "sign_out"
GOLDEN_ADD = "golden_add"
GOLDEN_REMOVE = "golden_remove"


@dataclass(frozen=True)
class Entry:
    id: int
    at: str  # ISO 8601 UTC, as stored and hashed
    actor: str
    action: str
    what: Any  # the decoded JSON
    prev_hash: str
    hash: str

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.at)


@dataclass(frozen=True)
class Verification:
    intact: bool
    n: int  # rows checked
    head: str  # hash of the newest row (GENESIS when empty)
    broken_id: int | None = None  # the first row that does not fit the chain
    reason: str = ""

    def describe(self) -> str:
        if self.intact:
            return f"audit trail intact: {self.n} entries, head {self.head}"
        return f"AUDIT TRAIL BROKEN at entry {self.broken_id}: {self.reason}"


def canonical_json(value: Any) -> str:
    """One text for one value: sorted keys, no spaces, ASCII only (what gets hashed)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def canonical_form(entry_id: int, at: str, actor: str, action: str, what_json: str, prev_hash: str) -> str:
    """The canonical form of a row: its id, fields and the previous row's hash."""
    return canonical_json({"id": entry_id, "at": at, "actor": actor, "action": action,
                           "what": what_json, "prev": prev_hash})


def entry_hash(entry_id: int, at: str, actor: str, action: str, what_json: str, prev_hash: str) -> str:
    return hashlib.sha256(canonical_form(entry_id, at, actor, action, what_json, prev_hash).encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def append(conn: sa.Connection, action: str, actor: str | None, what: Any = None) -> Entry:
    """Append one entry inside the caller's write transaction *conn*; returns it.

    Call it from inside the `_write()` block of the change it records (the store takes
    the write lock first, so nothing can append between reading the head and inserting).
    """
    table = db.audit_log
    last = conn.execute(sa.select(table.c.id, table.c.hash).order_by(table.c.id.desc()).limit(1)).first()
    entry_id = 1 if last is None else int(last[0]) + 1
    prev = GENESIS if last is None else str(last[1])
    at, actor, what_json = _now(), str(actor or ""), canonical_json(what if what is not None else {})
    digest = entry_hash(entry_id, at, actor, action, what_json, prev)
    conn.execute(table.insert().values(id=entry_id, at=at, actor=actor, action=action, what=what_json,
                                       prev_hash=prev, hash=digest))
    return Entry(entry_id, at, actor, action, json.loads(what_json), prev, digest)


def record(store, action: str, actor: str | None, what: Any = None) -> Entry:
    """Append one entry in a transaction of its own (or the thread's open one)."""
    with store._write() as conn:
        return append(conn, action, actor, what)


def _label_what(conn: sa.Connection, label_id: int) -> tuple[str, dict]:
    labels = db.labels
    row = conn.execute(sa.select(labels).where(labels.c.id == label_id)).mappings().one()
    before = conn.execute(
        sa.select(labels.c.verdict).where(labels.c.image_id == row["image_id"], labels.c.id < label_id)
        .order_by(labels.c.id.desc()).limit(1)
    ).first()
    sha = conn.scalar(sa.select(db.images.c.sha256).where(db.images.c.id == row["image_id"]))
    what = {"image_id": row["image_id"], "image_sha256": sha, "label_id": label_id,
            "from": before[0] if before else None, "to": row["verdict"], "mask": row["mask_path"]}
    if row["undoes"] is not None:
        what["undoes"] = row["undoes"]
    return str(row["author"] or ""), what


def label_changed(conn: sa.Connection, label_id: int) -> Entry:
    """The entry for a label row just appended (a set, clear or undo), inside its transaction."""
    actor, what = _label_what(conn, label_id)
    return append(conn, LABEL_UNDO if "undoes" in what else LABEL, actor, what)


def _entry(row: sa.Row) -> Entry:
    try:
        what = json.loads(row.what)
    except ValueError:
        what = row.what
    return Entry(int(row.id), row.at, row.actor, row.action, what, row.prev_hash, row.hash)


def entries(store, limit: int | None = None, action: str | None = None) -> list[Entry]:
    """Entries oldest first; *limit* keeps the newest *limit* of them."""
    table = db.audit_log
    query = sa.select(table).order_by(table.c.id.desc())
    if action is not None:
        query = query.where(table.c.action == action)
    if limit is not None:
        query = query.limit(limit)
    with store._read() as conn:
        rows = conn.execute(query).all()
    return [_entry(row) for row in reversed(rows)]


def verify(store) -> Verification:
    """Walk the whole chain; the first row whose hash or link does not fit breaks it."""
    table = db.audit_log
    prev, n, expected_id = GENESIS, 0, 1
    with store._read() as conn:
        for row in conn.execute(sa.select(table).order_by(table.c.id)):
            n += 1
            if row.id != expected_id:
                return Verification(False, n, prev, int(row.id),
                                    f"entry {expected_id} is missing (the rows jump from {expected_id - 1} to {row.id})")
            if row.prev_hash != prev:
                return Verification(False, n, prev, int(row.id),
                                    "its link to the entry before does not match (that entry was changed or "
                                    "removed, or this one was inserted)")
            digest = entry_hash(int(row.id), str(row.at), str(row.actor), str(row.action), str(row.what), prev)
            if digest != row.hash:
                return Verification(False, n, prev, int(row.id),
                                    "its content does not match its hash (the row was edited after it was written)")
            prev, expected_id = digest, expected_id + 1
    return Verification(True, n, prev)
