"""ORT's Python language plugin: Python handlers run in ORT's own process."""
