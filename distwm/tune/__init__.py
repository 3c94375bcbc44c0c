"""Ray Tune sweeps of distwm runs, cluster configs, job submission and aggregated reports.

Modules (each imports Ray only when used):

* :mod:`distwm.tune.cluster`: ``validate_cluster_config`` for ``ray up`` configs and KubeRay
  manifests;
* :mod:`distwm.tune.submit`: ``submit_job``, the ``distwm submit`` command (Ray Jobs API);
* :mod:`distwm.tune.sweep_config`: ``SweepConfig``, the strict schema of ``tune_configs/*.yaml``;
* :mod:`distwm.tune.trainable`: the Tune trainable that runs one distributed training run;
* :mod:`distwm.tune.resources`: each trial's bundles, ``fit_sweep`` (sizing trials to the
  cluster before Tune starts);
* :mod:`distwm.tune.sweep`: ``run_sweep`` / ``resume_sweep`` (``distwm sweep``);
* :mod:`distwm.tune.sweep_report`: ``build_sweep_report`` (``distwm report``);
* :mod:`distwm.tune.cli`: the ``sweep``, ``report`` and ``submit`` subcommands.
"""
