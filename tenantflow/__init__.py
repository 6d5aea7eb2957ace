"""Code shared by the API, the worker and the workflows: settings, mirror tables, crypto, contracts."""
