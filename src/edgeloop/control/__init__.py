"""The control plane: REST API, roles and tokens, audit log, approvals, snapshot publishing."""

from .api import create_control_app
from .auth import GRANTS, Permission, Principal, Role
from .service import Conflict, ControlPlane, InvalidChange, NotFound

__all__ = [
    "GRANTS",
    "Conflict",
    "ControlPlane",
    "InvalidChange",
    "NotFound",
    "Permission",
    "Principal",
    "Role",
    "create_control_app",
]
