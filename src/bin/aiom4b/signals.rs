//! SIGINT, SIGTERM and SIGHUP — Ctrl-C, `systemctl stop` / `docker stop`, a closed terminal —
//! all stop aiom4b the same clean way.
//!
//! The handler is installed first thing in `main`, so a signal during probing or planning is
//! handled too. The first signal cancels every job of the workflow that [`watch`] registered:
//! each job stops at its next packet, its temporaries are removed, it is recorded `cancelled`,
//! and the command exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM, 129
//! for SIGHUP). With no job running (probe, verify, listing) there is nothing to clean up, and
//! the process exits at once with that code. A second signal always exits at once; the next
//! start's recovery then removes what the job left.
//!
//! signal-hook's iterator runs the reaction on an ordinary thread, not inside the signal
//! handler, so it may lock, allocate and print.
use aiom4b::workflow::Workflow;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The first signal received (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// The workflow whose jobs a signal cancels.
static WORKFLOW: Mutex<Option<Weak<Workflow>>> = Mutex::new(None);

/// Starts the signal thread. Failing to install it leaves the default actions (the process is
/// killed, recovery cleans up on the next start), which is worth a warning but not an error.
pub fn install() {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "signal handlers not installed");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("aiom4b-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let first = RECEIVED
                    .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok();
                let wf = WORKFLOW
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .and_then(Weak::upgrade);
                match (first, wf) {
                    (true, Some(wf)) => {
                        // A closed terminal (SIGHUP) makes this write fail: ignore that.
                        let _ = writeln!(
                            std::io::stderr(),
                            "aiom4b: {}: stopping cleanly… (again to quit at once)",
                            name(sig)
                        );
                        wf.cancel_all();
                    }
                    _ => std::process::exit(128 + sig),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "signal thread not started");
    }
}

/// Lets signals cancel the jobs of `wf` (one workflow per command).
pub fn watch(wf: &Arc<Workflow>) {
    *WORKFLOW.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(wf));
    // A signal that arrived while the workflow was being opened.
    if RECEIVED.load(Ordering::SeqCst) != 0 {
        wf.cancel_all();
    }
}

/// The exit code of an interrupted command: 128 + the signal received, 130 when the stop came
/// another way.
pub fn exit_code() -> u8 {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => 130,
        sig => (128 + sig) as u8,
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "interrupted",
        SIGTERM => "terminated (SIGTERM)",
        SIGHUP => "hang-up (SIGHUP)",
        _ => "signal",
    }
}
