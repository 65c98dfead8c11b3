"""`sparkserve tune`: the best server arguments for a workload under a latency SLO, found by
measurement, guided by the plan, safe for unified memory.

space: what to try (defaults from the plan, --space overrides) and the SLO.
predict: the plan's curve for each configuration: skip, order, first load to try.
trial: one configuration started for real, its highest load under the SLO, stopped again.
journal: every finished trial appended and fsynced, so --resume repeats nothing.
search: the loop (budget, pruning by measurement); report: table, JSON, HTML, --apply.
"""
