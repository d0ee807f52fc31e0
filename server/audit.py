"""The audit log's table and how any part of the server writes to it: who changed what, when and
why, in the same transaction as the change. Every domain records its own changes here (a manager's
decision, a brand system's adjustment, an operator's command); the admin domain reads it."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import JSON, BigInteger, Column, Field

from server.db import TableModel, UTCDateTime, utcnow

SYSTEM = "system"


class AuditRecord(TableModel, table=True):
    """One change made by a person or a system. Append-only: never updated, never deleted by the app."""

    __tablename__ = "audit_log"

    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    actor: str = Field(max_length=255)  # manager:<email> | api_key:<id> | cli:<user> | system
    action: str = Field(max_length=100, index=True)  # e.g. referral.approve
    target: str = Field(max_length=255, index=True)  # e.g. member:<id>, manager:<email>, api_key:<id>
    reason: str = Field(default="", sa_column=Column(sa.Text, nullable=False))
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


def cli_actor() -> str:
    """How the audit log names the operator running an `engage` command: `cli:<system user>`."""
    try:
        return f"cli:{getpass.getuser()}"[:255]
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "cli"


def _row(actor: str, action: str, target: str, reason: str, details: dict[str, Any] | None) -> dict[str, Any]:
    if len(actor) > 255 or len(action) > 100 or len(target) > 255:
        raise ValueError("an audit actor or target is at most 255 characters, an action 100")
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "target": target,
        "reason": reason,
        "details": details or {},
    }


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    target: str,
    reason: str = "",
    details: dict[str, Any] | None = None,
) -> AuditRecord:
    """Add an audit record to the caller's unit of work: it commits with the change it describes,
    or rolls back with it."""
    row = AuditRecord(**_row(actor, action, target, reason, details))
    session.add(row)
    return row


async def record_many(session: AsyncSession, records: list[dict[str, Any]]) -> None:
    """Write several records (each the keyword arguments of `record`) in one statement of the
    caller's unit of work: what a unit holding many requests' changes uses."""
    if not records:
        return
    rows = [
        _row(r["actor"], r["action"], r["target"], r.get("reason", ""), r.get("details")) for r in records
    ]
    await (await session.connection()).execute(sa.insert(AuditRecord.__table__), rows)
