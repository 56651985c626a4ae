//! The client-side ARM budget: one token bucket per (subscription, client id, operation class),
//! below ARM's published per-principal buckets, so the operator slows itself down instead of
//! collecting 429s.
//!
//! - Reads, writes and deletes each have a bucket (ARM: reads 250 burst / 25 per s, writes and
//!   deletes 200 / 10 per s). The defaults stay below those: 200 / 20 and 160 / 8.
//! - A 429's `Retry-After` pauses every request of that (subscription, client), not one object.
//! - `x-ms-ratelimit-remaining-subscription-*` headers drain the local bucket when ARM says fewer
//!   requests remain than the bucket thinks, so the operator slows down before ARM says no.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Budgets for one principal on one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Sustained reads per second.
    pub reads_per_second: u32,
    /// Reads that may be sent at once after idling.
    pub read_burst: u32,
    /// Sustained writes (PUT, PATCH, POST) and deletes per second.
    pub writes_per_second: u32,
    /// Writes that may be sent at once after idling.
    pub write_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits { reads_per_second: 20, read_burst: 200, writes_per_second: 8, write_burst: 160 }
    }
}

/// Which ARM bucket a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// GET (resources and operation polls).
    Read,
    /// PUT, PATCH, POST.
    Write,
    /// DELETE.
    Delete,
}

impl OpClass {
    /// The class of an HTTP method.
    pub fn of(method: &reqwest::Method) -> OpClass {
        match *method {
            reqwest::Method::GET | reqwest::Method::HEAD => OpClass::Read,
            reqwest::Method::DELETE => OpClass::Delete,
            _ => OpClass::Write,
        }
    }

    /// The remaining-quota header ARM sends for this class.
    pub fn remaining_header(self) -> &'static str {
        match self {
            OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
            OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
            OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
    }
}

type Key = (String, String);

/// The limiter shared by every clone of an `ArmClient`.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Key, OpClass), Bucket>>,
    paused_until: Mutex<HashMap<Key, Instant>>,
}

impl Limiter {
    /// A limiter with these budgets.
    pub fn new(limits: RateLimits) -> Self {
        Limiter { limits, ..Limiter::default() }
    }

    fn bucket_for(&self, class: OpClass) -> Bucket {
        let (per_second, burst) = match class {
            OpClass::Read => (self.limits.reads_per_second, self.limits.read_burst),
            OpClass::Write | OpClass::Delete => (self.limits.writes_per_second, self.limits.write_burst),
        };
        let capacity = f64::from(burst.max(1));
        Bucket { tokens: capacity, capacity, per_second: f64::from(per_second.max(1)), updated: Instant::now() }
    }

    /// How long to wait before one request of `class` may go (0 = take a token now).
    fn try_take(&self, key: &Key, class: OpClass, now: Instant) -> Duration {
        if let Some(until) = self.paused_until.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            if *until > now {
                return *until - now;
            }
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((key.clone(), class)).or_insert_with(|| self.bucket_for(class));
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.per_second)
        }
    }

    /// Waits until a request of `class` for (`subscription`, `client_id`) fits the budget.
    /// Returns how long it waited.
    pub async fn acquire(&self, subscription: &str, client_id: &str, class: OpClass) -> Duration {
        let key = (subscription.to_ascii_lowercase(), client_id.to_string());
        let mut waited = Duration::ZERO;
        loop {
            let wait = self.try_take(&key, class, Instant::now());
            if wait.is_zero() {
                return waited;
            }
            tokio::time::sleep(wait).await;
            waited += wait;
        }
    }

    /// ARM answered 429: pause every request of this principal on this subscription.
    pub fn pause(&self, subscription: &str, client_id: &str, for_: Duration) {
        let key = (subscription.to_ascii_lowercase(), client_id.to_string());
        let until = Instant::now() + for_;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let slot = paused.entry(key).or_insert(until);
        if *slot < until {
            *slot = until;
        }
    }

    /// ARM said how many requests of `class` remain: never believe we have more than half of that.
    pub fn observe_remaining(&self, subscription: &str, client_id: &str, class: OpClass, remaining: u64) {
        let key = (subscription.to_ascii_lowercase(), client_id.to_string());
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((key, class)).or_insert_with(|| self.bucket_for(class));
        let allowed = remaining as f64 / 2.0;
        if bucket.tokens > allowed {
            bucket.tokens = allowed;
        }
    }
}

/// The subscription segment of an ARM path (`/subscriptions/{id}/...`), or "" when absent.
pub fn subscription_of(path: &str) -> &str {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => id,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, burst: u32) -> RateLimits {
        RateLimits { reads_per_second: rate, read_burst: burst, writes_per_second: rate, write_burst: burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_asks_to_wait_at_its_rate() {
        let l = Limiter::new(limits(10, 3));
        let key = ("s".to_string(), "c".to_string());
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.try_take(&key, OpClass::Write, now), Duration::ZERO);
        }
        let wait = l.try_take(&key, OpClass::Write, now);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // Reads have their own bucket.
        assert_eq!(l.try_take(&key, OpClass::Read, now), Duration::ZERO);
        // Another subscription has its own bucket.
        assert_eq!(l.try_take(&("t".into(), "c".into()), OpClass::Write, now), Duration::ZERO);
    }

    #[test]
    fn a_429_pauses_the_whole_principal_and_subscription() {
        let l = Limiter::new(limits(10, 100));
        l.pause("S", "c", Duration::from_secs(5));
        let key = ("s".to_string(), "c".to_string());
        let wait = l.try_take(&key, OpClass::Read, Instant::now());
        assert!(wait > Duration::from_secs(4), "{wait:?}");
        assert_eq!(l.try_take(&("s".into(), "other".into()), OpClass::Read, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn low_remaining_headers_drain_the_bucket() {
        let l = Limiter::new(limits(10, 100));
        l.observe_remaining("s", "c", OpClass::Write, 2);
        let key = ("s".to_string(), "c".to_string());
        let now = Instant::now();
        assert_eq!(l.try_take(&key, OpClass::Write, now), Duration::ZERO);
        assert!(l.try_take(&key, OpClass::Write, now) > Duration::ZERO);
    }

    #[test]
    fn subscription_is_read_from_the_path() {
        assert_eq!(subscription_of("/subscriptions/abc/resourceGroups/rg"), "abc");
        assert_eq!(subscription_of("/providers/x"), "");
    }
}
