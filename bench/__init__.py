"""Benchmarks of the server: the award path against a bare baseline, and live-message latency.

Run them with `make bench` (or `python -m bench.award_path` / `python -m bench.live_messages`).
Every process they start listens on 127.0.0.1 only and is stopped before they exit; their figures
are printed and written to bench/results/<name>.json.
"""
