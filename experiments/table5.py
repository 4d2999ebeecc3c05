"""Regenerate Table 5 of the paper (App. E: regression vs flow-matching objective) on a labelled dataset.

    python experiments/table5.py --data /tmp/arfm_labelled            # config: experiments/configs/table5.json

Trains the same tiny architecture twice — once with the flow-matching loss (Eq. 1), once with the
plain squared-error head — on the same windows and seed, then scores both with the §4.2 protocol
(the flow model sampled 5 times, best ``δ`` / mean ADE; regression is deterministic). The runner is
the one of ``experiments/table1.py``; a flow run with the same spec is shared with Table 1.
"""

from __future__ import annotations

from table1 import main

if __name__ == "__main__":
    main(default_config="experiments/configs/table5.json")
