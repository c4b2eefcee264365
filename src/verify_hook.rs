//! The conversion's own check of what it wrote: the independent reader of [`crate::verify`]
//! against what the plan and the pipeline say the file must contain, plus the things only an
//! audiobook needs (the `M4B ` brand and `stik` = audiobook).
use crate::error::{Error, Result};
use crate::model::{Book, Chapter};
use crate::options::AacProfile;
use crate::verify::{self, Expectations, M4bSummary};
use std::path::Path;

pub(crate) fn verify_written(
    part: &Path,
    book: &Book,
    total_samples: u64,
    chapters: &[Chapter],
    cover: bool,
    profile: AacProfile,
    streamed: Option<&[verify::VerifiedRun]>,
) -> Result<M4bSummary> {
    let exp = Expectations {
        total_samples: Some(total_samples),
        chapters: Some(chapters.to_vec()),
        metadata: Some(book.metadata.clone()),
        cover,
        profile: Some(profile),
        ..Expectations::new(book.target.sample_rate, book.target.channels)
    };
    // Packets the encoders' workers decoded already need only be matched, not decoded again.
    let summary = match streamed {
        Some(runs) => verify::summarize_streamed(part, runs)?,
        None => verify::summarize(part)?,
    };
    let mut problems = verify::check(&summary, &exp);
    if summary.major_brand != "M4B " {
        problems.push(format!("brand is {:?}, not \"M4B \"", summary.major_brand));
    }
    if summary.tags.media_type != Some(2) {
        problems.push(format!(
            "media type (stik) is {:?}, not 2 (audiobook)",
            summary.tags.media_type
        ));
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(Error::Verify {
            path: part.to_path_buf(),
            problems,
        })
    }
}
