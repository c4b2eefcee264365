//! Converts a folder of MP3 files into one `.m4b` through the library API: plan the book (scan,
//! probe, validate), then convert it with a [`ProgressSink`] that prints progress lines. The
//! same steps the `aiom4b convert` command takes, without the CLI.
//!
//! ```text
//! cargo run --release --example convert_folder -- FOLDER OUT.m4b
//! ```
//!
//! For example, on the book the `sample_book` example writes:
//!
//! ```text
//! cargo run --release --example sample_book
//! cargo run --release --example convert_folder -- "source/Sample Book" /tmp/sample.m4b
//! ```
use aiom4b::{
    plan, CancelToken, ConvertOptions, Converter, Finding, Limits, PlanOptions, ProgressSink,
    ScanOptions, Stage,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Prints one line per stage, per decoded file, per 10 % of encoded audio and per finding.
/// The library calls a sink from its worker threads, so the state it keeps is atomic.
#[derive(Default)]
struct PrintProgress {
    /// The last tenth of the book reported as encoded (0–10).
    tenths: AtomicU64,
}

impl ProgressSink for PrintProgress {
    fn stage(&self, stage: Stage) {
        println!("stage: {stage:?}");
    }

    fn file_decoded(&self, index: usize, path: &Path, samples: u64) {
        println!(
            "decoded file {}: {} ({samples} samples)",
            index + 1,
            path.display()
        );
    }

    fn encoded(&self, done: u64, total: u64) {
        // `total` is an estimate until the last file is decoded, so `done` may pass it.
        let tenth = (done.saturating_mul(10) / total.max(1)).min(10);
        if self.tenths.fetch_max(tenth, Ordering::Relaxed) < tenth {
            println!("encoded {:3} %", tenth * 10);
        }
    }

    fn finding(&self, finding: &Finding) {
        println!("finding: {finding}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(folder), Some(output), None) = (args.next(), args.next(), args.next()) else {
        return Err("usage: convert_folder FOLDER OUT.m4b".into());
    };

    // Scan, probe and validate: every blocking problem comes back at once as `Error::Invalid`.
    let mut plan_options = PlanOptions::default();
    plan_options.output = Some(output);
    let book = plan::plan(
        &[folder],
        &ScanOptions::default(),
        &Limits::default(),
        &plan_options,
    )?;
    println!(
        "planned: {} files, {:.1} s of audio -> {}",
        book.tracks.len(),
        book.duration_secs(),
        book.output_path.display()
    );
    for finding in &book.findings {
        println!("finding: {finding}");
    }

    // A Ctrl-C handler would call `cancel.cancel()`; the conversion then stops and cleans up.
    let cancel = CancelToken::new();
    let report = Converter::new(ConvertOptions::default()).convert(
        &book,
        &PrintProgress::default(),
        &cancel,
    )?;
    println!(
        "wrote {} ({} bytes, {} chapters, {:.1} s, {:.0}x realtime)",
        report.output_path.display(),
        report.size_bytes,
        report.chapters.len(),
        report.duration_secs,
        report.realtime_factor
    );
    Ok(())
}
