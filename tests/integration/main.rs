//! The one integration-test binary (each extra binary would link libav* again).
mod cli_checks;
mod cli_workflow;
mod common;
mod container;
mod convert;
mod faults;
mod fdk;
mod fixtures;
mod fuzz_regressions;
mod long_texts;
mod probe;
mod ranges;
mod splice;
mod truncated;
mod verify;
mod verify_hostile;
mod workflow;
