//! The hand-written MP4 box reader (`src/mp4box.rs`) and the tag patcher (`src/mp4tags.rs`) on
//! arbitrary bytes taken as a whole file, in memory: every box parser runs on every box of its
//! kind. `__fuzz::walk_mp4` asserts what the parsers promise (see there); this target only adds
//! that nothing panics, allocates without bound or loops.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|file: &[u8]| {
    let walk = aiom4b::__fuzz::walk_mp4(file);
    assert!(walk.patched <= walk.boxes);
});
