//! Trajectories and datasets.
