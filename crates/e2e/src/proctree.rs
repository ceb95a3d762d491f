//! The process tree under a pid (`processes.txt` in a failure folder): the
//! workspace's one definition, [`testkit::proctree`], under e2e's name.

pub use testkit::proctree::{render, tree, Proc};
