"""Several seeds of one configuration: which runs belong together, and their spread.

Runs whose params are equal except `run.seed` repeat one experiment with other
random draws (rollout sampling, reflection order, training batches), so a
figure of the group is the mean over the seeds with the seed-to-seed sample
standard deviation (n - 1 in the denominator: the spread one more seed would
show), and the number of seeds. One seed has no spread: its own figure (and
interval) is shown as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from jerp.config import ParamsError, flatten, parse_params


@dataclass(frozen=True)
class Spread:
    """Mean of one figure over n seeds and its sample standard deviation (None: n = 1)."""

    mean: float
    sd: float | None
    n: int


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values: a seed group has at least one run")
    n = len(values)
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return Spread(m, sd, n)


def fmt_spread(s: Spread, digits: int = 3) -> str:
    """'0.750 ± 0.250 (3 seeds)'; one seed: the bare mean."""
    if s.sd is None:
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.sd:.{digits}f} ({s.n} seeds)"


def normalized(params: dict) -> dict:
    """A run's params read through today's schema, defaults filled in, so a param added
    since an older run (absent from its params.yaml) counts at its default, which is how
    today's code reads that file; params the schema rejects are kept as written."""
    try:
        return parse_params(params).model_dump(mode="json")
    except ParamsError:
        return params


def without_seed(params: dict) -> str:
    """The params that define an experiment apart from its seed, as a comparable key."""
    params = normalized(params)
    run = {k: v for k, v in (params.get("run") or {}).items() if k != "seed"}
    return json.dumps({**params, "run": run}, sort_keys=True, default=str)


def setting_labels(params: Sequence[dict], most: int = 3) -> list[str]:
    """What sets each run apart from the first beyond its method and seed, as
    'key=value, ...' (at most `most`, then '+N'): an ablation row then says which knob it
    turned (finetune.algorithm=rft) rather than repeating the method's name."""
    flat = [flatten(normalized(p)) for p in params]
    labels = []
    for f in flat:
        diff = [f"{k}={f[k]}" for k in sorted(f) if k in flat[0] and f[k] != flat[0][k]
                and k not in ("run.seed", "run.method")]
        labels.append(", ".join(diff[:most]) + (f" +{len(diff) - most}" if len(diff) > most
                                                 else ""))
    return labels


def seed_groups(params: Sequence[dict]) -> list[list[int]]:
    """Indices of the runs grouped by everything but run.seed, in first-seen order. A run
    whose seed its group already holds (the same params twice: another revision of the
    code, say) starts a group of its own rather than being averaged with it."""
    groups: list[tuple[str, set, list[int]]] = []
    for i, p in enumerate(params):
        key, seed = without_seed(p), (p.get("run") or {}).get("seed")
        g = next((g for g in groups if g[0] == key and seed not in g[1]), None)
        if g is None:
            g = (key, set(), [])
            groups.append(g)
        g[1].add(seed)
        g[2].append(i)
    return [g[2] for g in groups]
