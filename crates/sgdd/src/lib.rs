//! The `sgdd` command line: argument parsing, progress, printing and figures over the
//! [`sgdd_train`] library (models, SGE, trainer, evaluation) and [`traj_data`] (datasets).

pub mod cli;
mod plots;

pub use plots::{Bars, Panel, Series, grouped_bars, loss_curve, trajectories};
