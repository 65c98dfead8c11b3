"""sparkserve: plan, run, benchmark and watch local LLM inference services."""

__version__ = "0.1.0"
