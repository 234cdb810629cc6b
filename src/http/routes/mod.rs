//! Route groups, one file per concern.

pub mod arm;
pub mod discovery;
pub mod faults;
pub mod graph_applications;
pub mod graph_directory;
pub mod health;
pub mod managed_identity;
pub mod token;
