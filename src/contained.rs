//! Panics of other libraries (Symphonia, mp4ameta) on hostile files, contained.
//!
//! Those readers are given files aiom4b did not write (`verify` of any M4B, probing any MP3); a
//! panic inside them is caught where they are called and becomes an ordinary problem report.
//! The default panic hook would still print "thread … panicked at …/registry/…" to stderr for
//! such a caught panic. The library installs no hook (that is the program's business), so it
//! marks the calls instead: [`panic_is_contained`] is true on a thread inside one, and the CLI's
//! hook logs those at debug level instead of printing them.
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`, catching a panic inside it, with [`panic_is_contained`] true meanwhile.
pub(crate) fn contain<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    DEPTH.with(|d| d.set(d.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    r
}

/// True while this thread runs another library's code whose panics aiom4b catches and reports
/// itself; a program's panic hook can stay quiet for those.
pub fn panic_is_contained() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks_only_inside() {
        assert!(!super::panic_is_contained());
        let inside = super::contain(super::panic_is_contained).unwrap();
        assert!(inside);
        assert!(super::contain(|| panic!("x")).is_err());
        assert!(!super::panic_is_contained());
    }
}
