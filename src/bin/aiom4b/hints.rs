//! The CLI's words for what the library says in its own terms.
//!
//! Library errors say what to do ("allow overwriting", "allow damaged input"), not which flag
//! does it: a service or another front end has no flags. The CLI prints them with its flags.
//! Errors reach the CLI as text (a job record keeps category, message and remedy, not the
//! error's type), so the mapping is by phrase; the tests below build each library error and
//! check that its phrase is still there to be mapped.
use std::borrow::Cow;

/// Library phrase → what the CLI says instead.
const PHRASES: &[(&str, &str)] = &[
    (
        "choose another output name, or allow overwriting",
        "choose another name with -o, or pass --overwrite",
    ),
    (
        "or allow damaged input to keep",
        "or pass --allow-damaged to keep",
    ),
    (
        "convert again with the native AAC encoder",
        "convert again with --encoder native",
    ),
    (
        "moving or deleting the sources needs backups",
        "--move-source-to and --delete-source need backups",
    ),
    (
        "enable backups, or set BACKUP_ENABLED=true",
        "drop --no-backup or set BACKUP_ENABLED=true",
    ),
    (
        "cannot write to the folder to move the sources to",
        "cannot write to the --move-source-to folder",
    ),
    (
        "raise the per-file size limit (MAX_FILE_SIZE_MB)",
        "raise it with --max-file-size-mb or MAX_FILE_SIZE_MB",
    ),
    (
        "raise the total size limit (MAX_TOTAL_SIZE_MB)",
        "raise it with --max-total-size-mb",
    ),
    ("(e.g. a bitrate of 64k)", "(e.g. --bitrate 64k)"),
    (
        "build with the fdk-aac feature and choose the FDK encoder",
        "build with --features fdk-aac and pass --encoder fdk",
    ),
    (
        "rebuild with the fdk-aac feature or choose the native encoder",
        "rebuild with --features fdk-aac or use --encoder native",
    ),
    (
        "use the HE-AAC (v1) profile for mono",
        "use --profile he for mono",
    ),
    (
        "prune old backups,",
        "prune old backups (`aiom4b backup prune`),",
    ),
    (
        "see the list of backups",
        "list backups with `aiom4b backup list`",
    ),
    ("from the list of backups", "(`aiom4b backup list`)"),
    ("see the list of jobs", "list jobs with `aiom4b jobs list`"),
    ("(see the effective configuration)", "(see `aiom4b config`)"),
    ("from its backup (", "with `aiom4b backup restore NAME` ("),
    (
        "restore the backup to another folder and convert",
        "restore the backup to another place (`aiom4b backup restore NAME --to DIR`) and convert",
    ),
    (
        "archive or delete the job record",
        "archive or delete the job (`aiom4b jobs clear`)",
    ),
    (
        "check the job's status and run",
        "check `aiom4b status` and run",
    ),
];

/// The findings' messages and remedies with the CLI's flags.
pub fn findings_with_flags(findings: &mut [aiom4b::Finding]) {
    for f in findings {
        f.message = with_flags(&f.message).into_owned();
        if let Some(r) = &mut f.remedy {
            *r = with_flags(r).into_owned();
        }
    }
}

/// `text` (an error message or remedy from the library) with the CLI's flags.
pub fn with_flags(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (library, cli) in PHRASES {
        if out.contains(library) {
            out = Cow::Owned(out.replace(library, cli));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn mapped(text: &str, flag: &str) {
        let cli = with_flags(text);
        assert!(cli.contains(flag), "{text:?} → {cli:?} lacks {flag}");
    }

    #[test]
    fn every_library_error_that_needs_a_flag_gets_it() {
        let p = PathBuf::from("/x/b.m4b");
        mapped(
            &aiom4b::Error::OutputExists(p.clone()).to_string(),
            "-o, or pass --overwrite",
        );
        mapped(
            &aiom4b::workflow::Error::OutputFileExists(p.clone()).to_string(),
            "--overwrite",
        );
        mapped(
            &aiom4b::workflow::Error::OutputFileExists(p.clone()).remedy(),
            "--overwrite",
        );
        mapped(
            &aiom4b::Error::Damaged {
                path: p.clone(),
                errors: 2,
                reason: "bad".into(),
            }
            .to_string(),
            "--allow-damaged",
        );
        mapped(
            &aiom4b::Error::Encoder {
                what: "encode".into(),
                reason: "x".into(),
            }
            .to_string(),
            "--encoder native",
        );
        let bad_bitrate = aiom4b::TargetFormat {
            sample_rate: 44_100,
            channels: 2,
            bitrate_bps: 1,
        };
        mapped(
            &aiom4b::validate_target(&bad_bitrate)
                .unwrap_err()
                .to_string(),
            "--bitrate 64k",
        );
        use aiom4b::workflow::Error as W;
        let full = W::InsufficientSpace {
            path: p.clone(),
            needed: 2,
            available: 1,
        };
        mapped(&full.to_string(), "`aiom4b backup prune`");
        mapped(&full.remedy(), "`aiom4b backup prune`");
        mapped(
            &W::BackupNotFound("b".into()).to_string(),
            "`aiom4b backup list`",
        );
        mapped(
            &W::BackupNotFound("b".into()).remedy(),
            "`aiom4b backup list`",
        );
        mapped(
            &W::JobNotFound("j".into()).to_string(),
            "`aiom4b jobs list`",
        );
        mapped(&W::JobNotFound("j".into()).remedy(), "`aiom4b jobs list`");
        // Applying the mapping twice changes nothing more: no CLI text holds a library phrase.
        for (_, cli) in PHRASES {
            assert_eq!(with_flags(cli), *cli, "{cli:?} is mapped again");
        }
    }

    #[test]
    fn the_plans_remedies_get_their_flags() {
        let mut findings = vec![
            aiom4b::Finding::error(aiom4b::FindingKind::Damaged, "a.mp3", "damaged")
                .with_remedy("replace the file with a good copy, or allow damaged input to keep the audio that is there"),
            aiom4b::Finding::error(aiom4b::FindingKind::FileTooLarge, "a.mp3", "big")
                .with_remedy("raise the per-file size limit (MAX_FILE_SIZE_MB), or split the file"),
            aiom4b::Finding::error(aiom4b::FindingKind::TotalTooLarge, "a.mp3", "big")
                .with_remedy("raise the total size limit (MAX_TOTAL_SIZE_MB), or convert the folders separately"),
        ];
        findings_with_flags(&mut findings);
        let remedies: Vec<_> = findings.iter().map(|f| f.remedy.clone().unwrap()).collect();
        assert!(remedies[0].contains("pass --allow-damaged to keep"));
        assert!(remedies[1].contains("--max-file-size-mb or MAX_FILE_SIZE_MB"));
        assert!(remedies[2].contains("--max-total-size-mb"));
    }

    #[test]
    fn text_without_a_library_phrase_is_unchanged() {
        assert!(matches!(
            with_flags("disk full"),
            Cow::Borrowed("disk full")
        ));
        assert_eq!(
            with_flags("choose another output name or allow overwriting"),
            "choose another output name or allow overwriting"
        );
    }
}
