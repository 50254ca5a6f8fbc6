"""The web console for agents (a first page: chat with the assistant)."""
