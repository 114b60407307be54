"""One runner per SDK for ``bench/eval.py``; each runs in its own subprocess (``python -m``).

``flags`` is the logical flag spec every runner translates into its SDK's format, ``harness``
the shared workload, verification, timing and JSON reporting.
"""
