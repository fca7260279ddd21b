"""The shared engine: catalog reading, sequence planning and repair, streaming copy and the sync.

The API, the db_sync Lambda and the `db-sync` CLI are thin shells over it. Import what you use
from its modules (dbsync.sequences, dbsync.sync, …): this package imports nothing, so that a
command pays only for what it runs. The layers, and what may import what: scripts/check_layers.py.
"""
