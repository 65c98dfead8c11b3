"""`sparkserve bench`: a streaming load generator that measures what a service delivers.

Modules, in the order a run touches them: `target` (what to hit, fail fast when it is down),
`tokens` and `workload` (prompts of exact token counts), `client` and `stream` (one request,
hot path), `load` (concurrency, rate, sweep, stop conditions), `sampler` (server and host
readings during the run), `metrics` and `stats` (the arithmetic), `planref` (plan and
ceiling beside the measurement), `schema` (the versioned JSON result), `render`, `html` and
`compare` (what users read).
"""
