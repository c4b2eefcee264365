//! Placeholder until verify.rs lands: checks the written file's structure with the independent
//! reader. Replaced by a call into [`crate::verify`].
use crate::error::Result;
use crate::model::{Book, Chapter};
use crate::pipeline::PipelineOutcome;
use std::path::Path;

pub(crate) fn verify_written(
    _part: &Path,
    _book: &Book,
    _outcome: &PipelineOutcome,
    _chapters: &[Chapter],
    _cover: bool,
) -> Result<()> {
    Ok(())
}
