"""The SmartAssign network (paper Sec. 3.2): config-free; built from params by
``smartassign.builder``."""

from smartassign.model.network import (
    MIN_SIZE,
    Knowledge,
    Routing,
    SmartAssign,
    SmartAssignOutput,
)

__all__ = ["MIN_SIZE", "Knowledge", "Routing", "SmartAssign", "SmartAssignOutput"]
