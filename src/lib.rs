//! # aiom4b — folders of MP3 audiobook files into one M4B
//!
//! ```text
//!  folders ──scan──▶ files ──probe──▶ tracks ──plan──▶ Book ──convert──▶ .m4b ──verify──▶ report
//!                    (order)         (rayon)          (chapters,         │
//!                                                      metadata, cover)  │
//!    convert (all cores): index the MP3s (demux only: exact clock) ─▶ one worker per core
//!                         decodes its own range ─▶ fresh AAC encoder ─▶ one muxer thread
//!    convert (-j1, re-plans): decode pool (rayon, book order)
//!                         ─▶ bounded channel ─▶ AAC encoder(s) ─▶ one muxer thread
//! ```
//!
//! The library never prints and never exits: it returns typed [`Error`]s, reports soft problems
//! as [`Finding`]s, emits `tracing` events and calls a [`ProgressSink`].
//!
//! # The public API
//!
//! - Plan: [`plan::plan`] (folders → a [`Book`]) and [`plan::inspect`] (the same with every
//!   finding, for a dry run); the stages under it, [`scan`] and [`probe`], for callers that
//!   want one step.
//! - Convert: [`Converter`] with [`ConvertOptions`], reporting to a [`ProgressSink`] and
//!   stopped by a [`CancelToken`]; it returns a [`ConvertReport`].
//! - Check: [`verify::summarize`] reads any `.m4b` independently; [`verify::check`] compares
//!   it with what was asked.
//! - Chapters files and chapter times: [`chapters`]; file names: [`sanitize`].
//! - The workflow around a conversion (jobs, backups, configuration, logs): [`workflow`], whose
//!   [`workflow::JobRunner`] is what the command-line tool and the service call.
//!
//! Everything fails with one [`Error`] (FFmpeg's errors wrapped as [`AvError`]). Everything
//! else (FFmpeg bindings, the thread pipeline, the MP4 box writer) is private.
//!
//! # Threads
//!
//! A conversion's threads (a decode pool, encoders, one muxer) live in `pipeline`; all are
//! named and joined before [`Converter::convert`] returns. Probing and planning read file
//! headers on rayon's global pool, [`verify`] decodes the written file on a few scoped threads,
//! and the workflow adds one worker per concurrent batch book and a watchdog per job with a time
//! limit. The library installs no signal handler and writes no logs itself: the command-line
//! tool owns the log writer threads and the signal thread.
// The public API is documented; checked where `internals` and `fuzzing` are off (`cargo clippy
// --lib`), since those features re-export undocumented inner parts for the crate's own tests
// and fuzz targets.
#![cfg_attr(
    not(any(feature = "internals", feature = "fuzzing")),
    warn(missing_docs)
)]

mod av;
pub mod chapter_formats;
pub mod chapters;
mod contained;
mod convert;
pub mod edit;
mod error;
/// Book metadata from Audnexus and Audible's catalog (feature `metadata`).
#[cfg(feature = "metadata")]
pub mod metadata;
mod model;
mod mp3bytes;
mod mp4box;
mod mp4tags;
mod oggbytes;
mod options;
mod pipeline;
pub mod plan;
pub mod probe;
mod progress;
mod publish;
mod regular;
pub mod sanitize;
pub mod scan;
pub mod silence;
pub mod split;
pub mod verify;
mod verify_hook;
pub mod workflow;

/// Internal parsers for the fuzz targets in `fuzz/`; not an API (cargo feature `fuzzing`).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;

/// The engine's inner parts, for this crate's own integration tests and benchmarks only (cargo
/// feature `internals`, which the crate's dev-dependency on itself turns on). Not an API: no
/// stability, no documentation; nothing else should turn the feature on.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod __internals {
    pub use crate::av::{decode, encode, input, mux, packets};
    pub use crate::mp4tags::write_extra_items;
    pub use crate::pipeline::tamper;
    pub use crate::publish::sibling_temp;
}

pub use av::encode::COMPILED_ENCODERS;
pub use av::{ffmpeg_build, library_versions, FfmpegBuild};
pub use contained::panic_is_contained;
pub use convert::{
    AudioUsed, ConvertReport, Converter, StageTimes, Timings, MAX_COVER_BYTES, MAX_COVER_SIDE,
};
pub use error::{AvError, Error, Result};
pub use model::*;
pub use options::*;
pub use progress::{CancelToken, NoProgress, ProgressSink, Stage};
