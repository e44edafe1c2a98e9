"""Offline WebShop (1,000-product setting, text mode); see shared/webshop/README.md."""

from .data import resolve_data_dir
from .env import WebShopEnv, list_tasks, search_candidates
from .goals import CATEGORIES

__all__ = ["CATEGORIES", "WebShopEnv", "list_tasks", "resolve_data_dir", "search_candidates"]
