"""The devnet: a local anvil chain with the platform's contracts deployed and seeded.

Read the modules in this order:

- ``artifacts``: the compiled contracts (ABIs, bytecode) and call data built from them.
- ``rpc``: a small JSON-RPC client (single calls and array batches).
- ``anvil``: starting and stopping the anvil process.
- ``deploy``: deploying the four contracts and the deployment file.
- ``model``: the contracts' rules in Python and ``Expected``, the seeder's own record.
- ``scenario``: the deterministic list of blocks and transactions for a scale.
- ``seed``: sending a scenario to the chain and checking every receipt.
- ``command``: ``chainsync devnet`` and the helpers the tests use.
"""
