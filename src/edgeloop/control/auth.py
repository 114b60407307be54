"""Roles, permissions and tokens. Tokens are random, shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

import msgspec


class Role(StrEnum):
    ADMIN = "admin"
    DESIGNER = "designer"  # edits drafts, requests launches
    OPERATOR = "operator"  # approves launches, toggles, kills, rolls back, manages edge tokens
    ANALYST = "analyst"  # reads everything, changes nothing
    EDGE = "edge"  # an edge node: reads snapshots, sends aggregates


class Permission(StrEnum):
    READ = "read"  # flags, experiments, history, drafts, launch requests, audit
    WRITE_FLAGS = "flags:write"  # create/update/archive flags directly, push a whole document
    EDIT_DRAFTS = "drafts:write"  # edit drafts and request their launch
    APPROVE_LAUNCH = "launch:approve"
    TOGGLE = "flags:toggle"  # enable, disable, kill switch
    ROLLBACK = "flags:rollback"
    MANAGE_TOKENS = "tokens:manage"  # any role's tokens
    MANAGE_EDGE_TOKENS = "tokens:manage-edge"  # edge tokens only
    SETTINGS = "settings:write"
    READ_SNAPSHOTS = "snapshots:read"
    SEND_AGGREGATES = "aggregates:write"
    READ_EXPERIMENT_KEYS = "keys:read"  # pseudonymization keys: edges only, never people


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission)
    - {Permission.SEND_AGGREGATES, Permission.READ_EXPERIMENT_KEYS},
    Role.DESIGNER: frozenset({Permission.READ, Permission.EDIT_DRAFTS}),
    Role.OPERATOR: frozenset(
        {
            Permission.READ,
            Permission.APPROVE_LAUNCH,
            Permission.TOGGLE,
            Permission.ROLLBACK,
            Permission.MANAGE_EDGE_TOKENS,
        }
    ),
    Role.ANALYST: frozenset({Permission.READ}),
    Role.EDGE: frozenset(
        {Permission.READ_SNAPSHOTS, Permission.SEND_AGGREGATES, Permission.READ_EXPERIMENT_KEYS}
    ),
}


class Principal(msgspec.Struct, frozen=True):
    token_id: str
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]


def new_token() -> tuple[str, str, str]:
    """A fresh (token id, secret token, hash of the token). Only the hash is ever stored."""
    token_id = secrets.token_hex(6)
    token = f"el_{token_id}_{secrets.token_urlsafe(32)}"
    return token_id, token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
