//! Progress reporting and cancellation, separate from each other: the library calls a
//! [`ProgressSink`] (the CLI draws a bar, the service stores percentages) and polls a
//! [`CancelToken`] per packet.
use crate::model::Finding;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The stages of a conversion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Listing the input folders (not reported by the library's conversion itself).
    Scan,
    /// Reading each MP3's headers and first frames (not reported by the library's conversion
    /// itself).
    Probe,
    /// Deciding order, chapters, metadata and format (not reported by the library's
    /// conversion itself).
    Plan,
    /// Decoding, encoding and muxing the audio; [`ProgressSink::encoded`] reports within it.
    Convert,
    /// Writing the extra tags and flushing the file to disk.
    Finalize,
    /// Checking the written file independently (only when verification is on).
    Verify,
    /// The file is in place at its final path (only from
    /// [`Converter::convert`](crate::Converter::convert)).
    Done,
}

/// Receives progress events. Every method has an empty default; implementations must be cheap
/// and must not block (they are called from the encoder and decoder threads).
pub trait ProgressSink: Sync {
    /// A new stage starts.
    fn stage(&self, _stage: Stage) {}
    /// File `index` of the book has been decoded completely: `samples` at the output rate.
    fn file_decoded(&self, _index: usize, _path: &Path, _samples: u64) {}
    /// `done` of about `total` output samples have been encoded. `total` is the plan's estimate
    /// until the last file is decoded, then exact.
    fn encoded(&self, _done: u64, _total: u64) {}
    /// A non-fatal problem found while converting.
    fn finding(&self, _finding: &Finding) {}
}

/// A sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl ProgressSink for NoProgress {}

/// A cancellation flag shared between the caller (e.g. a Ctrl-C handler) and the conversion.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled, on a flag of its own.
    pub fn new() -> Self {
        Self::default()
    }
    /// A token on an existing flag, so that one flag stops everything that watches it: the
    /// workflow's job flag (set by `Workflow::cancel`, Ctrl-C and its watchdog) becomes the
    /// engine's token without a thread copying one into the other.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        CancelToken(flag)
    }
    /// Requests cancellation; the conversion stops at its next packet and cleans up.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once [`cancel`](Self::cancel) was called on this token or a clone of it (or the
    /// flag it was made [`from`](Self::from_flag) was set).
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
