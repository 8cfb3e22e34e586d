"""PMS connectors: the connector interface, vendor capability profiles, the sandbox PMS."""
