//! The fleet bound: how many objects one principal's ARM read budget can keep checked.
//!
//! A converged object costs one GET per resync period, drawn from the read bucket of its
//! (subscription, client id). So one principal can check at most `reads per second × resync
//! seconds` objects per period; beyond that, objects are checked less often than the resync asks
//! and drift is found late. The operator counts the objects of each principal, exports the count
//! and the bound as metrics, and warns once each time a principal goes over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// (subscription, client id), as the ARM budget keys its buckets.
type Principal = (String, String);

/// Objects per principal, against the bound.
#[derive(Debug)]
pub struct Fleet {
    /// Objects one principal can check per resync period.
    capacity: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each object's principal (an index into `principals`), by uid.
    objects: HashMap<String, usize>,
    /// Principals seen, with their object counts and whether they are over the bound now.
    principals: Vec<(Principal, u64, bool)>,
}

/// What changed when an object was counted.
#[derive(Debug, PartialEq, Eq)]
pub enum Crossing {
    /// The principal went over the bound with this object.
    Over {
        /// Its objects now.
        objects: u64,
    },
    /// Nothing to say.
    None,
}

impl Fleet {
    /// The bound for a read budget of `reads_per_second` and a resync of `resync`.
    pub fn new(reads_per_second: u32, resync: Duration) -> Self {
        Fleet { capacity: bound(reads_per_second, resync), state: Mutex::new(State::default()) }
    }

    /// Objects one principal can keep checked per resync period.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Counts object `uid` for (`subscription`, `client_id`) (again: a no-op; a changed principal
    /// moves it).
    pub fn observe(&self, uid: &str, subscription: &str, client_id: &str) -> Crossing {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let index = match st.principals.iter().position(|((s, c), _, _)| s.eq_ignore_ascii_case(subscription) && c == client_id) {
            Some(i) => i,
            None => {
                st.principals.push(((subscription.to_ascii_lowercase(), client_id.to_string()), 0, false));
                st.principals.len() - 1
            }
        };
        // Called by every reconcile: an object already counted for this principal costs no allocation.
        match st.objects.get(uid).copied() {
            Some(before) if before == index => return Crossing::None,
            Some(before) => {
                self.count(&mut st, before, -1);
            }
            None => {}
        }
        st.objects.insert(uid.to_string(), index);
        self.count(&mut st, index, 1)
    }

    /// Forgets object `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = st.objects.remove(uid) {
            self.count(&mut st, index, -1);
        }
    }

    /// Objects counted for (`subscription`, `client_id`).
    pub fn objects_of(&self, subscription: &str, client_id: &str) -> u64 {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.principals.iter().find(|((s, c), _, _)| s.eq_ignore_ascii_case(subscription) && c == client_id).map_or(0, |(_, n, _)| *n)
    }

    fn count(&self, st: &mut State, index: usize, delta: i64) -> Crossing {
        let capacity = self.capacity;
        let ((subscription, client_id), n, over) = &mut st.principals[index];
        *n = n.saturating_add_signed(delta);
        crate::metrics::principal_objects(subscription, client_id, *n, capacity);
        let now_over = *n > capacity;
        let crossed = now_over && !*over;
        *over = now_over;
        if crossed { Crossing::Over { objects: *n } } else { Crossing::None }
    }
}

/// `reads_per_second × resync`, in objects.
pub fn bound(reads_per_second: u32, resync: Duration) -> u64 {
    u64::from(reads_per_second).saturating_mul(resync.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_the_read_budget_of_one_resync_period() {
        // The operator's defaults: 20 reads per second, a 600 s resync.
        assert_eq!(bound(20, Duration::from_secs(600)), 12_000);
        // ARM's own bucket refills 25 per second.
        assert_eq!(bound(25, Duration::from_secs(600)), 15_000);
    }

    #[test]
    fn a_principal_over_the_bound_is_reported_once_per_crossing() {
        // 1 read per second, 3 s resync: 3 objects per principal.
        let fleet = Fleet::new(1, Duration::from_secs(3));
        for uid in ["a", "b", "c"] {
            assert_eq!(fleet.observe(uid, "S", "c1"), Crossing::None);
        }
        // The same object again counts once; another principal has its own count.
        assert_eq!(fleet.observe("a", "s", "c1"), Crossing::None);
        assert_eq!(fleet.observe("x", "s", "c2"), Crossing::None);
        assert_eq!(fleet.observe("d", "s", "c1"), Crossing::Over { objects: 4 });
        assert_eq!(fleet.observe("e", "s", "c1"), Crossing::None, "said once, not per object");
        fleet.forget("e");
        fleet.forget("d");
        assert_eq!(fleet.objects_of("s", "c1"), 3);
        // Over again after dropping back: said again.
        assert_eq!(fleet.observe("f", "s", "c1"), Crossing::Over { objects: 4 });
        // An object moved to another principal leaves the first.
        assert_eq!(fleet.observe("f", "s", "c2"), Crossing::None);
        assert_eq!((fleet.objects_of("s", "c1"), fleet.objects_of("s", "c2")), (3, 2));
    }
}
