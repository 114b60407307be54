"""The edge node service: decide API, OFREP, push to attached clients, snapshot sync."""

from .api import create_edge_app
from .node import AttachedClient, EdgeNode

__all__ = ["AttachedClient", "EdgeNode", "create_edge_app"]
