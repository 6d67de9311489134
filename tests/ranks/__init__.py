"""The rank side of the MPI tests: programs run on every rank by ``tests/mpi_harness.py``
(``run_ranks("name", nprocs)`` runs ``tests/ranks/name.py`` under ./mpirun.sh). They send their
results back with ``report(...)`` and the test functions assert on them."""
