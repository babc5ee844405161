//! The MPI backend: rank 0 runs the program and the pool, the other ranks serve tasks.
