"""Imported only by the DataLoader's forkserver (its preload list), never elsewhere: drops the
MPI launcher's variables from that server's environment, which every worker inherits.

A worker re-runs the main script's top level (as any forkserver or spawn child does). Under
mpirun, a script that calls ``col.init()`` there would make each worker join the job with the
rank's PMI variables, and PMI_FD names a descriptor that in the worker is something else (seen:
the resource tracker's pipe), so PMI writes into it. Without them MPI starts as a singleton.
"""

from dlsys import config

config.drop_launcher_variables()
