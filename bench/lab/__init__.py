"""The lab: studies, performance benchmarks and release tools built on the benchmark library.

- ``bench.lab.demo``: ``make demo`` (meta-train, export and benchmark one recipe);
- ``bench.lab.ship``: a trained ``.lopt`` file, with its benchmark, into ``lopt/pretrained/``;
- ``bench.lab.perf``: performance benchmarks, each a ratio to a reference in the same run;
- ``bench.lab.studies``: meta-experiments (estimators, deployment variants, ablation tables,
  stability at 4×, saturation, rate spread, family evaluation).

They reuse the library's parts (``bench.compare``, ``bench.runner``, ``bench.metrics``,
``meta_train``'s validator and trainer); the library never imports the lab. Each runs as a
subcommand of ``python -m bench``.
"""
