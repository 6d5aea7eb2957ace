"""One router per resource: health, projects, users, webhooks."""
