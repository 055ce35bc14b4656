//! The cap on connections one client address holds before its first request's headers are
//! complete. Such a connection costs a descriptor and gives nothing yet; without a cap one
//! address could take the whole listener for the header deadline, again and again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Unfinished connections per address key.
pub(super) struct PerAddress {
    cap: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place under its address's cap, given back when dropped.
pub(super) struct Held {
    key: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    /// At most `cap` unfinished connections per key.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            counts: Arc::default(),
        }
    }

    /// A place for one more connection of `key`, unless it already holds `cap`.
    pub fn hold(&self, key: IpAddr) -> Option<Held> {
        let mut counts = self.counts.lock().expect("not poisoned");
        let count = counts.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            key,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().expect("not poisoned");
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_per_key_and_come_back_when_dropped() {
        let per = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = per.hold(a).unwrap();
        let _second = per.hold(a).unwrap();
        assert!(per.hold(a).is_none());
        assert!(per.hold(b).is_some());
        drop(first);
        assert!(per.hold(a).is_some());
        drop(per.hold(b));
        assert!(
            !per.counts.lock().unwrap().contains_key(&b),
            "empty keys are forgotten"
        );
    }
}
