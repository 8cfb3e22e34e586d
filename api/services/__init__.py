"""Services between the HTTP handlers and the repositories."""
