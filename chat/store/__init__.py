"""The hand-written SQL of the hot paths and the worker's connections on its event loop.

Everything else speaks the ORM. These are the statements a burst or a busy desk runs
hundreds of times a second, where compiling them with the ORM cost more than running
them (docs/performance.md, changes 7-9 and 14-15).
"""
