"""ORT's Python language plugin: Python handlers run in ORT's own process (the default) or in a
persistent worker process (``ORT_PYTHON_MODE=subprocess``)."""
