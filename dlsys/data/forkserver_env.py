"""Imported only by the DataLoader's forkserver (its preload list), never elsewhere: drops the
MPI launcher's variables from that server's environment, which every worker inherits.

A worker re-runs the main script's top level (as any forkserver or spawn child does). Under
mpirun, a script that calls ``col.init()`` there would make each worker join the job with the
rank's PMI variables, and PMI_FD names a descriptor that in the worker is something else (seen:
the resource tracker's pipe), so PMI writes into it. Without them MPI starts as a singleton.
"""

import os

_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "HYDI_", "MPI_LOCAL", "OMPI_", "I_MPI_")

for _name in [k for k in os.environ if k.startswith(_PREFIXES)]:
    del os.environ[_name]
