"""SmartAssign: multi-task deraining and desnowing with learned knowledge assignment."""

__version__ = "0.1.0"
