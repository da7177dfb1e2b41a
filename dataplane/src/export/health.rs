//! Backend health: passive failure detection (N consecutive failures or timeouts eject a backend for a backoff
//! that doubles while it keeps failing) and the active probe that readmits it (an empty OTLP export, a valid
//! no-op request). While a backend is ejected its keys go to the next backend in each key's ring order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::HealthCheck;

/// What a recorded outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Ejected { for_: Duration, failures: u32 },
    Readmitted,
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    /// Ejections in a row without a successful probe in between (grows the backoff).
    ejections: u32,
    ejected_until: Option<Instant>,
    /// Every ejection since the backend joined the pool.
    total_ejections: u64,
}

/// A backend's health as the status page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub available: bool,
    /// A probe is in flight (the backend is ejected until it answers).
    pub probing: bool,
    /// When the ejected backend is due for a probe.
    pub ejected_until: Option<Instant>,
    pub total_ejections: u64,
}

/// The health of one backend.
#[derive(Debug)]
pub struct Health {
    cfg: HealthCheck,
    available: AtomicBool,
    /// A probe is in flight: no second one until it answers.
    probing: AtomicBool,
    state: Mutex<State>,
    /// Told of every ejection, so that the prober sleeps until one is due instead of polling.
    ejections: Arc<Notify>,
}

impl Health {
    /// `ejections` is notified whenever this backend is ejected (again).
    pub fn new(cfg: HealthCheck, ejections: Arc<Notify>) -> Health {
        Health {
            cfg,
            available: AtomicBool::new(true),
            probing: AtomicBool::new(false),
            state: Mutex::new(State { consecutive_failures: 0, ejections: 0, ejected_until: None, total_ejections: 0 }),
            ejections,
        }
    }

    /// Whether the backend takes keys now. Hot path: one atomic load.
    #[inline]
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Records the outcome of an export. `failure` counts only errors that say the backend is not serving
    /// (unavailable, timed out), not a rejection of the data.
    pub fn record(&self, failure: bool) -> Option<Transition> {
        if !self.cfg.enabled {
            return None;
        }
        let Ok(mut s) = self.state.lock() else { return None };
        if !failure {
            s.consecutive_failures = 0;
            return None;
        }
        s.consecutive_failures += 1;
        if s.ejected_until.is_some() || s.consecutive_failures < self.cfg.consecutive_failures.max(1) {
            return None;
        }
        Some(self.eject(&mut s))
    }

    fn eject(&self, s: &mut State) -> Transition {
        let backoff =
            self.cfg.ejection_time.0.saturating_mul(1 << s.ejections.min(16)).min(self.cfg.max_ejection_time.0);
        s.ejections += 1;
        s.total_ejections += 1;
        s.ejected_until = Some(Instant::now() + backoff);
        self.available.store(false, Ordering::Relaxed);
        self.ejections.notify_one();
        Transition::Ejected { for_: backoff, failures: s.consecutive_failures }
    }

    /// The state now, for display.
    pub fn snapshot(&self) -> HealthSnapshot {
        let (ejected_until, total_ejections) =
            self.state.lock().map(|s| (s.ejected_until, s.total_ejections)).unwrap_or((None, 0));
        HealthSnapshot {
            available: self.available(),
            probing: self.probing.load(Ordering::Acquire),
            ejected_until,
            total_ejections,
        }
    }

    /// Whether an ejected backend is due for a probe and none is in flight; if so, the caller must probe and
    /// report with [`Health::probed`].
    pub fn start_probe(&self, now: Instant) -> bool {
        let due = self.state.lock().ok().and_then(|s| s.ejected_until).is_some_and(|until| now >= until);
        due && self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// When the ejected backend is due for a probe; `None` if it is not ejected or a probe is in flight (whose
    /// outcome readmits it or ejects it again, which notifies).
    pub fn probe_due(&self) -> Option<Instant> {
        if self.probing.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().ok().and_then(|s| s.ejected_until)
    }

    /// Records a probe's outcome: success readmits, failure ejects again for longer.
    pub fn probed(&self, ok: bool) -> Option<Transition> {
        // Cleared before an ejection notifies the prober: woken, it must see no probe in flight, or it would wait
        // for a notification that never comes.
        self.probing.store(false, Ordering::Release);
        let Ok(mut s) = self.state.lock() else { return None };
        s.ejected_until?;
        if ok {
            s.consecutive_failures = 0;
            s.ejections = 0;
            s.ejected_until = None;
            self.available.store(true, Ordering::Relaxed);
            Some(Transition::Readmitted)
        } else {
            Some(self.eject(&mut s))
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;
    use crate::config::Dur;

    fn health(cfg: HealthCheck) -> (Health, Arc<Notify>) {
        let ejections = Arc::new(Notify::new());
        (Health::new(cfg, Arc::clone(&ejections)), ejections)
    }

    fn notified(n: &Notify) -> bool {
        n.notified().now_or_never().is_some()
    }

    fn cfg() -> HealthCheck {
        HealthCheck {
            enabled: true,
            consecutive_failures: 3,
            ejection_time: Dur::millis(100),
            max_ejection_time: Dur::millis(350),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn consecutive_failures_eject_and_success_resets() {
        let (h, ejections) = health(cfg());
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None, "a success resets the count");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), None);
        assert!(!notified(&ejections), "nothing ejected yet");
        assert!(matches!(h.record(true), Some(Transition::Ejected { failures: 3, .. })));
        assert!(!h.available());
        assert!(notified(&ejections), "an ejection wakes the prober");
        assert_eq!(h.record(true), None, "already ejected");
        assert!(!notified(&ejections));
        let snap = h.snapshot();
        assert!(!snap.available && snap.ejected_until.is_some() && snap.total_ejections == 1, "{snap:?}");
    }

    #[test]
    fn backoff_grows_until_a_probe_succeeds() {
        let (h, ejections) = health(cfg());
        assert_eq!(h.probe_due(), None);
        let before = Instant::now();
        for _ in 0..3 {
            h.record(true);
        }
        let due = h.probe_due().expect("ejected: a probe is due");
        assert!(due >= before + Duration::from_millis(100) && due <= Instant::now() + Duration::from_millis(100));
        assert!(!h.start_probe(Instant::now()));
        assert!(h.start_probe(Instant::now() + Duration::from_millis(150)));
        assert_eq!(h.probe_due(), None, "a probe is in flight");
        assert!(!h.start_probe(Instant::now() + Duration::from_millis(150)), "one probe at a time");
        let backoffs: Vec<_> = (0..3)
            .map(|_| {
                assert!(notified(&ejections));
                match h.probed(false) {
                    Some(Transition::Ejected { for_, .. }) => for_,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(notified(&ejections) && h.probe_due().is_some(), "a failed probe ejects again");
        assert_eq!(
            backoffs,
            vec![Duration::from_millis(200), Duration::from_millis(350), Duration::from_millis(350)],
            "doubles up to the maximum"
        );
        assert_eq!(h.probed(true), Some(Transition::Readmitted));
        assert!(h.available());
        let snap = h.snapshot();
        assert_eq!((snap.ejected_until, snap.total_ejections), (None, 4), "readmitted; four ejections counted");
        assert_eq!(h.probe_due(), None, "readmitted");
        assert_eq!(h.probed(true), None, "not ejected any more");
    }

    #[test]
    fn disabled_never_ejects() {
        let (h, _) = health(HealthCheck { enabled: false, ..cfg() });
        for _ in 0..10 {
            assert_eq!(h.record(true), None);
        }
        assert!(h.available());
    }
}
