//! Fixed-window login limits, kept in process memory and driven by the gateway clock.

use std::collections::HashMap;
use std::sync::Mutex;

use cynode_core::model::Timestamp;

use super::config::LoginRateLimit;

/// Above this many tracked keys, expired windows are dropped on the next call.
const PRUNE_ABOVE: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    count: u32,
}

#[derive(Default)]
struct State {
    per_ip: HashMap<String, Window>,
    failures: HashMap<(String, String), Window>,
}

/// Login limits: attempts per address and failures per (handle, address).
pub(crate) struct LoginLimiter {
    cfg: LoginRateLimit,
    state: Mutex<State>,
}

impl LoginLimiter {
    pub(crate) fn new(cfg: LoginRateLimit) -> Self {
        Self {
            cfg,
            state: Mutex::new(State::default()),
        }
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.cfg.window_secs.max(1))
            .unwrap_or(i64::MAX / 2_000)
            .saturating_mul(1000)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds until the window that started at `start_ms` ends (at least 1).
    fn retry_after(&self, start_ms: i64, now_ms: i64) -> u64 {
        let left = (start_ms + self.window_ms() - now_ms).max(0);
        u64::try_from((left + 999) / 1000).unwrap_or(1).max(1)
    }

    fn prune(&self, st: &mut State, now_ms: i64) {
        let w = self.window_ms();
        if st.per_ip.len() > PRUNE_ABOVE {
            st.per_ip.retain(|_, v| now_ms < v.start_ms + w);
        }
        if st.failures.len() > PRUNE_ABOVE {
            st.failures.retain(|_, v| now_ms < v.start_ms + w);
        }
    }

    /// Counts one attempt from `ip`; `Err(retry_after_secs)` when over the limit.
    pub(crate) fn hit_ip(&self, ip: &str, now: Timestamp) -> Result<(), u64> {
        if self.cfg.per_ip == 0 {
            return Ok(());
        }
        let now_ms = now.timestamp_millis();
        let w = self.window_ms();
        let mut st = self.lock();
        self.prune(&mut st, now_ms);
        let win = st.per_ip.entry(ip.to_string()).or_insert(Window {
            start_ms: now_ms,
            count: 0,
        });
        if now_ms >= win.start_ms + w || now_ms < win.start_ms {
            *win = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        win.count = win.count.saturating_add(1);
        if win.count > self.cfg.per_ip {
            let start = win.start_ms;
            return Err(self.retry_after(start, now_ms));
        }
        Ok(())
    }

    /// Whether (handle, ip) has used up its failures; `Err(retry_after_secs)` if so.
    pub(crate) fn check_failures(&self, handle: &str, ip: &str, now: Timestamp) -> Result<(), u64> {
        if self.cfg.failures_per_handle_ip == 0 {
            return Ok(());
        }
        let now_ms = now.timestamp_millis();
        let st = self.lock();
        match st.failures.get(&(handle.to_string(), ip.to_string())) {
            Some(win)
                if now_ms < win.start_ms + self.window_ms()
                    && win.count >= self.cfg.failures_per_handle_ip =>
            {
                Err(self.retry_after(win.start_ms, now_ms))
            }
            _ => Ok(()),
        }
    }

    /// Records a failed attempt for (handle, ip).
    pub(crate) fn record_failure(&self, handle: &str, ip: &str, now: Timestamp) {
        if self.cfg.failures_per_handle_ip == 0 {
            return;
        }
        let now_ms = now.timestamp_millis();
        let w = self.window_ms();
        let mut st = self.lock();
        self.prune(&mut st, now_ms);
        let win = st
            .failures
            .entry((handle.to_string(), ip.to_string()))
            .or_insert(Window {
                start_ms: now_ms,
                count: 0,
            });
        if now_ms >= win.start_ms + w || now_ms < win.start_ms {
            *win = Window {
                start_ms: now_ms,
                count: 0,
            };
        }
        win.count = win.count.saturating_add(1);
    }

    /// Forgets the failures of (handle, ip) after a successful login.
    pub(crate) fn clear_failures(&self, handle: &str, ip: &str) {
        self.lock()
            .failures
            .remove(&(handle.to_string(), ip.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("time")
    }

    #[test]
    fn per_ip_window_allows_the_limit_then_reopens() {
        let l = LoginLimiter::new(LoginRateLimit {
            window_secs: 60,
            per_ip: 3,
            failures_per_handle_ip: 0,
        });
        for _ in 0..3 {
            l.hit_ip("a", t(0)).expect("within limit");
        }
        assert_eq!(l.hit_ip("a", t(1_500)), Err(59));
        l.hit_ip("b", t(1_500)).expect("other address unaffected");
        assert_eq!(l.hit_ip("a", t(59_999)), Err(1));
        l.hit_ip("a", t(60_000)).expect("new window");
    }

    #[test]
    fn failures_block_one_handle_from_one_address_until_cleared_or_expired() {
        let l = LoginLimiter::new(LoginRateLimit {
            window_secs: 10,
            per_ip: 0,
            failures_per_handle_ip: 2,
        });
        l.record_failure("bob", "a", t(0));
        l.check_failures("bob", "a", t(1))
            .expect("one failure is fine");
        l.record_failure("bob", "a", t(2));
        assert_eq!(l.check_failures("bob", "a", t(3)), Err(10));
        l.check_failures("bob", "b", t(3)).expect("other address");
        l.check_failures("eve", "a", t(3)).expect("other handle");
        l.check_failures("bob", "a", t(10_000))
            .expect("window over");
        l.record_failure("bob", "a", t(20_000));
        l.record_failure("bob", "a", t(20_001));
        assert!(l.check_failures("bob", "a", t(20_002)).is_err());
        l.clear_failures("bob", "a");
        l.check_failures("bob", "a", t(20_003)).expect("cleared");
    }

    #[test]
    fn zero_disables_and_pruning_keeps_live_windows() {
        let l = LoginLimiter::new(LoginRateLimit {
            window_secs: 1,
            per_ip: 0,
            failures_per_handle_ip: 0,
        });
        for _ in 0..100 {
            l.hit_ip("a", t(0)).expect("no limit");
        }
        let l = LoginLimiter::new(LoginRateLimit {
            window_secs: 1,
            per_ip: 1,
            failures_per_handle_ip: 1,
        });
        for i in 0..=PRUNE_ABOVE {
            l.hit_ip(&format!("ip{i}"), t(0)).expect("first hit");
        }
        l.hit_ip("live", t(1_500)).expect("first");
        l.hit_ip("new", t(2_000)).expect("prunes expired");
        let st = l.lock();
        assert_eq!(
            st.per_ip.len(),
            2,
            "expired windows are dropped, live ones kept"
        );
        assert!(st.per_ip.contains_key("live") && st.per_ip.contains_key("new"));
    }
}
