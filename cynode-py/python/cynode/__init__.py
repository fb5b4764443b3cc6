"""CyNodeAI for Python agents.

The bindings are growing with the Rust libraries; today they expose the build version
and the handle rule of the storage layer.
"""

from cynode._native import validate_handle, version

__all__ = ["validate_handle", "version"]
