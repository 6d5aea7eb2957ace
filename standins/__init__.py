"""Local stand-ins for external systems (dev and tests only): real HTTP servers.

Nothing here is used in production; the README says how to point tenantflow at the real services.
"""
