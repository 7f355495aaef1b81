"""What the agents app announces to the apps above it, as Django signals.

agents imports no app above it, so it cannot tell them of a change itself: it sends a
signal, and whoever cares connects to it (the chat core rings the agents' dashboards,
chat/receivers.py).
"""

from django.dispatch import Signal

# Sent by agents/services.py (and the admin) inside the change's transaction, with
# `owner_ids`: whose lists changed, an agent's own (its id) or the shared ones (None).
# A receiver that acts outside the database waits for the commit.
canned_responses_changed = Signal()
