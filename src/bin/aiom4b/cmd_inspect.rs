//! The read-only commands: `aiom4b probe FOLDER...` (what a conversion would do) and
//! `aiom4b verify FILE.m4b` (an independent check of a written file). Neither touches
//! `DATA_DIR`.
use crate::args::{ProbeArgs, VerifyArgs};
use crate::{ui, EXIT_FAILURE};
use aiom4b::plan;
use aiom4b::workflow::{naming, Config};
use anyhow::Result;

pub fn probe(cfg: &Config, a: ProbeArgs) -> Result<u8> {
    // The fault suite stops here to signal a probe in progress.
    if std::env::var_os("AIOM4B_TEST_STOP_AT").is_some_and(|s| s == "probe") {
        crate::workflow_cmds::stop_self();
    }
    let mut ins = plan::inspect(
        &a.input.folders,
        &a.input.book.scan_options(cfg),
        &cfg.limits(),
        &a.input.plan_options(cfg),
    )?;
    // Show the name a conversion would get now: the plan's default does not know the
    // workflow's name template.
    if let (Some(book), None) = (&mut ins.book, &a.input.output) {
        let first = &a.input.folders[0];
        let folder = std::fs::canonicalize(first)
            .unwrap_or_else(|_| first.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = naming::render(
            &cfg.name_template,
            &book.metadata,
            &folder,
            &naming::timestamp(chrono::Local::now()),
        );
        book.output_path = cfg.output_dir().join(format!("{stem}.m4b"));
    }
    crate::hints::findings_with_flags(&mut ins.findings);
    if let Some(book) = &mut ins.book {
        crate::hints::findings_with_flags(&mut book.findings);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&ins)?);
    } else {
        ui::print_inspection(&ins);
    }
    Ok(if ins.book.is_some() { 0 } else { EXIT_FAILURE })
}

pub fn verify(a: VerifyArgs) -> Result<u8> {
    let summary = aiom4b::verify::summarize(&a.file)?;
    let mut exp = aiom4b::verify::Expectations::new(summary.sample_rate, summary.channels);
    exp.cover = summary.cover.is_some();
    exp.profile = None; // LC, HE-AAC and HE-AAC v2 are all audiobook profiles
    let mut problems = aiom4b::verify::check(&summary, &exp);
    if summary.major_brand != "M4B " {
        problems.push(format!(
            "brand is {:?}; audiobook players look for \"M4B \"",
            summary.major_brand
        ));
    }
    if a.json {
        let doc = serde_json::json!({ "ok": problems.is_empty(), "problems": problems, "summary": summary });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        ui::print_summary(&summary, &problems);
    }
    Ok(if problems.is_empty() { 0 } else { EXIT_FAILURE })
}
