"""The serving benchmark: the Bento beside two baselines, loaded with wrk (bench/README.md)."""
