"""The serving benchmark (issue 6): the Bento beside two baselines, measured with hey.

``python -m bench.run --help`` (or ``make bench`` / ``make bench-quick``).
"""
