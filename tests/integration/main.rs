//! The one integration-test binary (each extra binary would link libav* again).
mod fixtures;
mod verify;
mod workflow;
