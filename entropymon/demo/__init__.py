"""The built-in demo: a tiny model learns two-digit addition with TRL's GRPO on the CPU, monitored live.

``run_demo`` is what ``entropymon demo`` calls; ``python -m entropymon.demo.make_sample_logs``
regenerates the bundled ``sample_logs/``. Importing this package needs nothing heavy: torch,
transformers and TRL are imported when the demo runs.
"""

__all__ = ["run_demo"]


def __getattr__(name):
    if name == "run_demo":
        from entropymon.demo.run import run_demo

        return run_demo
    raise AttributeError(f"module 'entropymon.demo' has no attribute {name!r}")
