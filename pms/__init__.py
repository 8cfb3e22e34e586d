"""PMS connectors: the connector interface, the HTTP machinery and dialects they share, the
vendors (one module each, plus packages registered by entry point), the sandbox PMS."""
