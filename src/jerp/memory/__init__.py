"""The experiential rule pool: revision, reflection, retrieval and diffs.

Everything here is a pure function over the records in `jerp.records`; the
only I/O is the embedding index of `retrieve`, at the edge; the LLM reflector
takes its model call as a function (a served model's comes from
`jerp.policy.served`).
"""
