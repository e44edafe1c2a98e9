"""The experiential rule pool: revision, reflection, retrieval and diffs.

Everything here is a pure function over the records in `jerp.records`; the
only I/O is the embedding index of `retrieve` and the HTTP call of
`reflect.llm.openai_generate`, both at the edges.
"""
