"""Python client side of edgeloop: an OpenFeature provider for in-process evaluation."""

from .openfeature import EdgeloopProvider

__all__ = ["EdgeloopProvider"]
