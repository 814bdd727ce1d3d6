"""Hydra's Ray launcher for a sweep over several hosts, as a Hydra plugin (Hydra finds
launchers in the hydra_plugins namespace only): the work is in sweep/cluster/launch.py."""

from __future__ import annotations

from collections.abc import Sequence

from hydra.core.utils import JobReturn

try:
    # The module, not the class: Hydra registers every launcher class this module holds.
    from hydra_plugins.hydra_ray_launcher import ray_launcher
except ImportError:  # the `ray` extra is not installed: no Ray launcher to extend
    pass
else:

    class ClusterRayLauncher(ray_launcher.RayLauncher):
        """hydra-ray-launcher's ``RayLauncher``, except that a job lost with its Ray worker
        (its host died after Ray's retries ran out) fails alone instead of ending the
        sweep."""

        def launch(self, job_overrides: Sequence[Sequence[str]],
                   initial_job_idx: int) -> Sequence[JobReturn]:
            from sweep.cluster.launch import launch

            return launch(self, job_overrides, initial_job_idx)
