//! A job's time limit: a named thread per running job that raises the job's cancel flag when
//! the limit passes, so a conversion stuck in the decoder ends like a cancelled one.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The derived time limit: 15 minutes plus twice the audio length. The engine runs tens of
/// times faster than real time, so only a stuck conversion reaches it.
pub(crate) fn auto_timeout(audio_secs: f64) -> Duration {
    Duration::from_secs(15 * 60) + Duration::from_secs_f64((audio_secs * 2.0).min(1e9))
}

/// Sets the cancel flag when the time limit passes. One thread per running job, sleeping on a
/// condition variable; it ends when the watchdog is dropped.
pub(crate) struct Watchdog {
    state: Arc<(Mutex<WatchState>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchState {
    started: Instant,
    limit: Duration,
    done: bool,
    timed_out: bool,
}

impl Watchdog {
    pub(crate) fn start(limit: Duration, cancel: Arc<AtomicBool>) -> Watchdog {
        let state = Arc::new((
            Mutex::new(WatchState {
                started: Instant::now(),
                limit,
                done: false,
                timed_out: false,
            }),
            Condvar::new(),
        ));
        let s = state.clone();
        let thread = std::thread::Builder::new()
            .name("aiom4b-watchdog".into())
            .spawn(move || {
                let (lock, cvar) = &*s;
                let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if st.done {
                        return;
                    }
                    let elapsed = st.started.elapsed();
                    if elapsed >= st.limit {
                        st.timed_out = true;
                        cancel.store(true, Ordering::Relaxed);
                        return;
                    }
                    let wait = st.limit - elapsed;
                    st = cvar
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .ok();
        Watchdog { state, thread }
    }

    pub(crate) fn set_limit(&self, limit: Duration) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).limit = limit;
        cvar.notify_all();
    }

    pub(crate) fn timed_out(&self) -> Option<Duration> {
        let st = self.state.0.lock().unwrap_or_else(|p| p.into_inner());
        st.timed_out.then_some(st.limit)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).done = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_timeout_is_a_quarter_hour_plus_twice_the_audio() {
        assert_eq!(auto_timeout(0.0), Duration::from_secs(900));
        assert_eq!(auto_timeout(3600.0), Duration::from_secs(900 + 7200));
        // An absurd length saturates instead of overflowing.
        assert!(auto_timeout(f64::MAX) > Duration::from_secs(1_000_000_000));
    }

    #[test]
    fn the_watchdog_raises_the_flag_at_its_limit_and_a_new_limit_moves_it() {
        let flag = Arc::new(AtomicBool::new(false));
        let dog = Watchdog::start(Duration::from_secs(3600), flag.clone());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!flag.load(Ordering::Relaxed));
        assert_eq!(dog.timed_out(), None);
        dog.set_limit(Duration::from_millis(1));
        let t = Instant::now();
        while !flag.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(flag.load(Ordering::Relaxed));
        assert_eq!(dog.timed_out(), Some(Duration::from_millis(1)));
    }

    #[test]
    fn a_dropped_watchdog_never_fires() {
        let flag = Arc::new(AtomicBool::new(false));
        drop(Watchdog::start(Duration::from_millis(30), flag.clone()));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!flag.load(Ordering::Relaxed));
    }
}
