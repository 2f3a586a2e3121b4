"""chainsync server: the gRPC JobService, its job store, runner and sync engine.

In layers, each importing only its own and those below it (tests/test_layers.py):

- base (this folder): ``kinds`` (the record kinds, declared once), ``states``,
  ``errors`` (and their catalogue), ``stopping``, ``retry``, ``config``,
  ``logs``, ``metrics``;
- ``transport/``: the JSON-RPC client and each endpoint's window;
- ``engine/``: a block range into records (ranges, chunks, event-less
  changes, reorgs, decoding);
- ``jobs/``: the job store, the runner, one sync job, IPFS content;
- ``service/``: the gRPC JobService and the wiring that starts it all;
- ``cli``: the ``chainsync`` command.

The README's "Layout" table says which module owns what.
"""
