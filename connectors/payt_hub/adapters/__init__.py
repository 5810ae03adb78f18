from .base import ADAPTERS, Adapter, Page, get_adapter  # noqa: F401
