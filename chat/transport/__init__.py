"""Transport: the WebSocket consumers and what they stand on. Authenticate, decode a
frame, call a service, encode the answer, deliver in seq order; no rule of the support
domain lives here and no model is imported."""
