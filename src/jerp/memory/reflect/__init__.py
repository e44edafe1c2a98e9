"""Reflectors: turn rollouts (and reference successes) into pool proposals.

`contrastive` is the deterministic offline default; `llm` asks a model and
parses its answer with the strict `grammar`.
"""
