//! The client-side ARM budget: one token bucket per (subscription, client id, operation class),
//! below ARM's published per-principal buckets, so the operator slows itself down instead of
//! collecting 429s.
//!
//! - Reads, writes and deletes each have a bucket (ARM: reads 250 burst / 25 per s, writes and
//!   deletes 200 / 10 per s). The defaults stay below those: 200 / 20 and 160 / 8.
//! - A 429's `Retry-After` pauses every request of that (subscription, client), not one object.
//! - `x-ms-ratelimit-remaining-subscription-*` headers drain the local bucket when ARM says fewer
//!   requests remain than the bucket thinks, so the operator slows down before ARM says no.
//! - A token is reserved, first come first served: an empty bucket goes into debt, and each caller
//!   learns when its own token is earned, so waiters never race each other for the next one.
//! - A reconcile about to write asks for a [`Limiter::write_permit`] first. When its token is
//!   further away than [`GIVE_BACK_ABOVE`], it is told when to come back instead of waiting: the
//!   token stays reserved for that resource, and the worker serves other objects (polls of
//!   finished operations) meanwhile.

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

/// The bucket key of a principal on a subscription (subscription ids compared case-insensitively).
fn key(subscription: &str, client_id: &str) -> Key {
    (subscription.to_ascii_lowercase(), client_id.to_string())
}

/// A write whose token is further away than this gives its worker back (see
/// [`Limiter::write_permit`]); a shorter wait is spent in the request.
pub const GIVE_BACK_ABOVE: Duration = Duration::from_millis(250);
/// A reserved write token nobody came back for is dropped this long after it was earned.
const PERMIT_TTL: Duration = Duration::from_secs(120);

/// The limiter shared by every clone of an `ArmClient`.
#[derive(Debug, Default)]
pub struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(Key, OpClass), Bucket>>,
    paused_until: Mutex<HashMap<Key, Instant>>,
    /// Write tokens reserved for one resource by [`Limiter::write_permit`]: when each is earned.
    permits: Mutex<HashMap<(Key, String), Instant>>,
}

impl Limiter {
    /// A limiter with these budgets.
    pub fn new(limits: RateLimits) -> Self {
        Limiter { limits, ..Limiter::default() }
    }

    /// The budgets.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    fn bucket_for(&self, class: OpClass) -> Bucket {
        let (per_second, burst) = match class {
            OpClass::Read => (self.limits.reads_per_second, self.limits.read_burst),
            OpClass::Write | OpClass::Delete => (self.limits.writes_per_second, self.limits.write_burst),
        };
        let capacity = f64::from(burst.max(1));
        Bucket { tokens: capacity, capacity, per_second: f64::from(per_second.max(1)), updated: Instant::now() }
    }

    /// Reserves one token of `class` and returns how long until it is earned (0 = now). The bucket
    /// may go into debt: the next caller's token is earned after this one's.
    fn reserve(&self, key: &Key, class: OpClass, now: Instant) -> Duration {
        let paused = self.paused_for(key, now);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry((key.clone(), class)).or_insert_with(|| self.bucket_for(class));
        bucket.refill(now);
        bucket.tokens -= 1.0;
        let earned = if bucket.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-bucket.tokens / bucket.per_second) };
        earned.max(paused)
    }

    /// Waits until a request of `class` for (`subscription`, `client_id`) fits the budget; a
    /// write to `path` uses the token a [`Limiter::write_permit`] reserved for it, if any.
    /// Returns how long it waited.
    pub async fn acquire(&self, subscription: &str, client_id: &str, class: OpClass, path: &str) -> Duration {
        let key = key(subscription, client_id);
        let now = Instant::now();
        let permit = match class {
            OpClass::Write => self
                .permits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(key.clone(), path.to_ascii_lowercase()))
                .filter(|earned| now < *earned + PERMIT_TTL),
            _ => None,
        };
        let mut wait = match permit {
            Some(earned) => earned.saturating_duration_since(now),
            None => self.reserve(&key, class, now),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        // A 429 while this request waited pauses it too.
        loop {
            let paused = self.paused_for(&key, Instant::now());
            if paused.is_zero() {
                return wait;
            }
            tokio::time::sleep(paused).await;
            wait += paused;
        }
    }

    fn paused_for(&self, key: &Key, now: Instant) -> Duration {
        self.paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now))
    }

    /// Before a write to `path`: `None` when it may go now (its token is reserved for it), or
    /// `Some(wait)` when its token is earned only after `wait` — the caller comes back then
    /// instead of holding a worker; the token stays reserved for `path` until
    /// [`PERMIT_TTL`] after it is earned.
    pub fn write_permit(&self, subscription: &str, client_id: &str, path: &str) -> Option<Duration> {
        let key = key(subscription, client_id);
        let now = Instant::now();
        let mut permits = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        permits.retain(|_, earned| now < *earned + PERMIT_TTL);
        let slot = (key, path.to_ascii_lowercase());
        let earned = match permits.get(&slot) {
            Some(earned) => *earned,
            None => {
                let earned = now + self.reserve(&slot.0, OpClass::Write, now);
                permits.insert(slot, earned);
                earned
            }
        };
        let wait = earned.saturating_duration_since(now);
        (wait > GIVE_BACK_ABOVE).then_some(wait)
    }

    /// A reconcile that reserved a write token for `path` ([`Limiter::write_permit`]) and then
    /// found nothing to write gives it back: the permit goes and the bucket has the token again,
    /// so taking over resources that already match (a reinstall, an import) is bound by the read
    /// budget, not by the write budget. Without a permit for `path` (a write used it), nothing.
    pub fn release_permit(&self, subscription: &str, client_id: &str, path: &str) {
        let key = key(subscription, client_id);
        let released = self.permits.lock().unwrap_or_else(|e| e.into_inner()).remove(&(key.clone(), path.to_ascii_lowercase()));
        if released.is_none() {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&(key, OpClass::Write)) {
            bucket.refill(Instant::now());
            bucket.tokens = (bucket.tokens + 1.0).min(bucket.capacity);
        }
    }

    /// ARM answered 429: pause every request of this principal on this subscription.
    pub fn pause(&self, subscription: &str, client_id: &str, for_: Duration) {
        let key = key(subscription, client_id);
        let until = Instant::now() + for_;
        let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let slot = paused.entry(key).or_insert(until);
        if *slot < until {
            *slot = until;
        }
    }

    /// ARM said how many requests of `class` remain: never believe we have more than half of that.
    pub fn observe_remaining(&self, subscription: &str, client_id: &str, class: OpClass, remaining: u64) {
        let key = key(subscription, client_id);
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
            assert_eq!(l.reserve(&key, OpClass::Write, now), Duration::ZERO);
        }
        let wait = l.reserve(&key, OpClass::Write, now);
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        // The next caller queues behind the first: its token is earned one refill later.
        let next = l.reserve(&key, OpClass::Write, now);
        assert!(next > Duration::from_millis(190) && next <= Duration::from_millis(200), "{next:?}");
        // Reads have their own bucket.
        assert_eq!(l.reserve(&key, OpClass::Read, now), Duration::ZERO);
        // Another subscription has its own bucket.
        assert_eq!(l.reserve(&("t".into(), "c".into()), OpClass::Write, now), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_write_that_would_wait_gets_a_time_to_come_back_and_its_token_is_kept() {
        let l = Limiter::new(limits(4, 1));
        // The bucket's one token: this write may go now, and its request uses that token.
        assert_eq!(l.write_permit("s", "c", "/a"), None);
        // The next token is earned in 250 ms: short enough to wait in the request.
        assert_eq!(l.write_permit("s", "c", "/b"), None);
        // Then 500 ms: come back later; asking again reserves nothing more.
        let wait = l.write_permit("s", "c", "/c").expect("a time to come back");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        let again = l.write_permit("s", "c", "/C").expect("still not earned");
        assert!(again <= wait, "{again:?}");
        // The writes use their reserved tokens: /a goes at once, /b within its 250 ms.
        assert_eq!(l.acquire("s", "c", OpClass::Write, "/a").await, Duration::ZERO);
        assert!(l.acquire("s", "c", OpClass::Write, "/b").await <= Duration::from_millis(250));
        // A write without a permit queues behind the three reserved ones.
        let key = ("s".to_string(), "c".to_string());
        let after = l.reserve(&key, OpClass::Write, Instant::now());
        assert!(after > Duration::from_millis(400), "{after:?}");
        // Reads have their own bucket.
        assert_eq!(l.acquire("s", "c", OpClass::Read, "/c").await, Duration::ZERO);
    }

    #[tokio::test]
    async fn a_write_token_nobody_used_goes_back_to_the_bucket() {
        let l = Limiter::new(limits(1, 2));
        let key = ("s".to_string(), "c".to_string());
        // Two reservations take the burst; a third would wait a second.
        assert_eq!(l.write_permit("s", "c", "/a"), None);
        assert_eq!(l.write_permit("s", "c", "/b"), None);
        // /a had nothing to write: its token goes back, and the next reservation waits for nothing.
        l.release_permit("S", "c", "/A");
        assert_eq!(l.write_permit("s", "c", "/c"), None);
        // /b wrote (its request used the permit): releasing it afterwards gives nothing back.
        assert_eq!(l.acquire("s", "c", OpClass::Write, "/b").await, Duration::ZERO);
        l.release_permit("s", "c", "/b");
        let wait = l.reserve(&key, OpClass::Write, Instant::now());
        assert!(wait > Duration::from_millis(900), "{wait:?}");
        // A release never lifts the bucket above its burst.
        for path in ["/c", "/c", "/x"] {
            l.release_permit("s", "c", path);
        }
        let buckets = l.buckets.lock().unwrap();
        assert!(buckets[&(key, OpClass::Write)].tokens <= 2.0);
    }

    #[test]
    fn a_429_pauses_the_whole_principal_and_subscription() {
        let l = Limiter::new(limits(10, 100));
        l.pause("S", "c", Duration::from_secs(5));
        let key = ("s".to_string(), "c".to_string());
        let wait = l.reserve(&key, OpClass::Read, Instant::now());
        assert!(wait > Duration::from_secs(4), "{wait:?}");
        assert_eq!(l.reserve(&("s".into(), "other".into()), OpClass::Read, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn low_remaining_headers_drain_the_bucket() {
        let l = Limiter::new(limits(10, 100));
        l.observe_remaining("s", "c", OpClass::Write, 2);
        let key = ("s".to_string(), "c".to_string());
        let now = Instant::now();
        assert_eq!(l.reserve(&key, OpClass::Write, now), Duration::ZERO);
        assert!(l.reserve(&key, OpClass::Write, now) > Duration::ZERO);
    }

    #[test]
    fn subscription_is_read_from_the_path() {
        assert_eq!(subscription_of("/subscriptions/abc/resourceGroups/rg"), "abc");
        assert_eq!(subscription_of("/providers/x"), "");
    }
}
