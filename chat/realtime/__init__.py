"""Real time: who hears about what, and how it reaches their sockets.

The channel layer is a doorbell, not the record: frames are sent only after the
transaction that justifies them committed (`fanout`, a subscriber of the domain
events), and a socket that misses one recovers from the database by `seq`
(`delivery`). `groups` names the recipients; `outbox` is the one caller of
`group_send`; `layer` is the Redis channel layer and what happens when it fails.
"""
