"""The suite's alert receiver: Alertmanager's webhook, the alerts that are active, and DATA_DIR's free space."""
