//! The one integration-test binary (each extra binary would link libav* again).
mod fdk;
mod fixtures;
mod verify;
mod workflow;
