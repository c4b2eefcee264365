//! The one integration-test binary (each extra binary would link libav* again).
mod cli_workflow;
mod common;
mod container;
mod convert;
mod fdk;
mod fixtures;
mod fuzz_regressions;
mod probe;
mod ranges;
mod splice;
mod verify;
mod workflow;
