//! The one integration-test binary (each extra binary would link libav* again).
mod cli_workflow;
mod container;
mod fixtures;
mod verify;
mod workflow;
