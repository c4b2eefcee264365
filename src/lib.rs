//! # aiom4b — folders of MP3 audiobook files into one M4B
//!
//! ```text
//!  folders ──scan──▶ files ──probe──▶ tracks ──plan──▶ Book ──convert──▶ .m4b ──verify──▶ report
//!                    (order)         (rayon)          (chapters,         │
//!                                                      metadata, cover)  │
//!    convert (all cores): index the MP3s (demux only: exact clock) ─▶ one worker per core
//!                         decodes its own range ─▶ fresh AAC encoder ─▶ one muxer thread
//!    convert (-j1, resampled books, re-plans): decode pool (rayon, book order)
//!                         ─▶ bounded channel ─▶ AAC encoder(s) ─▶ one muxer thread
//! ```
//!
//! The library never prints and never exits: it returns typed [`Error`]s, reports soft problems
//! as [`Finding`]s, emits `tracing` events and calls a [`ProgressSink`].
pub mod av;
pub mod chapters;
mod contained;
pub mod convert;
pub mod error;
pub mod model;
mod mp3bytes;
mod mp4box;
pub mod mp4tags;
pub mod options;
pub mod pipeline;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod publish;
pub mod sanitize;
pub mod scan;
pub mod verify;
mod verify_hook;
pub mod workflow;

/// Internal parsers for the fuzz targets in `fuzz/`; not an API (cargo feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

pub use contained::panic_is_contained;
pub use convert::{ConvertReport, Converter};
pub use error::{Error, Result};
pub use model::*;
pub use options::*;
pub use progress::{CancelToken, NoProgress, ProgressSink, Stage};
