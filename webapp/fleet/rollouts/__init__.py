"""Fleet rollouts (issue 18): a desired pipeline for a label selector, delivered in waves through
the answers to the nodes' reports, gated, approved by a second operator, audited.

Parts: tables (the rollout tables, on the centre's metadata; revision 0003), plan (the body of a
new rollout and its waves: no SQL), store (every rollout SQL statement: create, read, actions),
gates (when a wave starts, takes or pauses), delivery (the ingest hook: one indexed lookup per
report), api (``/api/fleet/rollouts``), pages (``/rollouts``), push (the Bacalhau and Kubernetes
specs of a wave).

May import ``webapp.fleet``'s store parts (schema, engine, filters, nodes, store_write, db, report),
``webapp.web``, ``webapp.notify``, ``webapp.accounts`` and ``webapp.core``; never ``webapp.node``.
The rest of ``webapp.fleet`` imports only ``tables`` (the sync of a node) and ``delivery``.
"""
