"""The SmartAssign network (paper Sec. 3.2) and its ablation variants."""

from smartassign.model.network import (
    MIN_SIZE,
    Knowledge,
    Routing,
    SmartAssign,
    SmartAssignOutput,
    routing_for,
)

__all__ = ["MIN_SIZE", "Knowledge", "Routing", "SmartAssign", "SmartAssignOutput", "routing_for"]
