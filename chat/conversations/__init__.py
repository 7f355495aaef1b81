"""The chat core's decisions: every state change of a conversation, one module per
subject, each change one short transaction announced with a domain event on commit
(chat/events.py). See docs/architecture.md for the map."""
