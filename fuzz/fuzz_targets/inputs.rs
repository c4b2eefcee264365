//! Opening any input file as `probe` does (issue 16's demuxer paths): the container sniff
//! (`src/scan/sniff.rs`), then `src/av/input.rs` — FFmpeg with the one demuxer the first bytes
//! call for (mp3, mov, aac, flac, ogg, wav), the codec check, the exact length (edit list,
//! `iTunSMPB`, granule positions), the parts' own chapters, tags and pictures — and the first
//! frames decoded, and a stretch from its middle decoded from a seek as the ranged encoder
//! does (FLAC, WAV, AAC-LC and ALAC in MP4). Input: the whole file.
//!
//! Never a panic; a file that is accepted has a rate and channels, and its own chapters start
//! at 0 and strictly increase.
#![no_main]
use aiom4b_fuzz::MemFile;
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

thread_local! {
    // FFmpeg reads a file, not a buffer (custom I/O over a `File`): an unlinked memfd,
    // rewritten for each input, so nothing is left on disk.
    static FILE: RefCell<MemFile> = RefCell::new(MemFile::new("input"));
}

fuzz_target!(|file: &[u8]| {
    FILE.with_borrow_mut(|f| check(f.set(file)));
});

fn check(path: &std::path::Path) {
    let _ = aiom4b::scan::sniff_container(path);
    if let Ok(info) = aiom4b::probe::probe_file(path) {
        assert!(info.sample_rate > 0 && info.channels > 0, "{info:?}");
        if let Some(first) = info.chapters.first() {
            assert_eq!(first.start_samples, 0);
        }
        for w in info.chapters.windows(2) {
            assert!(w[0].start_samples < w[1].start_samples, "{w:?}");
        }
    }
    // The ranged encoder's seek into a FLAC, WAV or MP4 file (to its middle): never more than
    // the stated length, and an undamaged stretch ends where it says.
    if let Some((from, delivered, got)) = aiom4b::__fuzz::decode_seeking_stretch(path) {
        assert!(
            delivered <= got.end.saturating_sub(from),
            "{from} {delivered} {got:?}"
        );
        if got.damaged == 0 && got.whole {
            assert_eq!(delivered, got.end.saturating_sub(from), "{got:?}");
        }
    }
}
