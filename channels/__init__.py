"""Custom Rasa input channels, listed by module path in credentials.yml."""
from channels import log_redaction

# Rasa imports this package when it loads the shop's channels: from then on its logs are redacted.
log_redaction.install()
