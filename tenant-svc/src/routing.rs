//! The call-routing cache: `ResolveNumber` (every incoming call) answered from memory.
//!
//! An entry maps (called number, Twilio AccountSid) to the customer that owns the number and the
//! customer's core row (status, business name, overrides). Entries are dropped as soon as the
//! database says the customer changed: migration V11 has triggers on `tenant.customers`,
//! `tenant.phone_numbers` and `tenant.platform_defaults` that `NOTIFY tenant_routing` with the
//! customer id (or `*`), and [`listen`] keeps a dedicated connection `LISTEN`ing for them. Every
//! replica therefore sees a suspension, a released or reassigned number or a new greeting within
//! the notification latency; the replica that made the change also drops its entries at once.
//!
//! Correctness rules:
//! - While the listening connection is down (or has not started), the cache is not used at all:
//!   every resolution reads the database, as if there were no cache. When it comes back, the
//!   cache starts empty.
//! - A lookup that read the database may store its result only if no invalidation happened since
//!   it started (a generation counter), so a row read just before a change committed is never
//!   stored after the change's notification was handled.
//! - Unknown numbers are not cached (a number assigned later must resolve at once).
//! - Entries also expire after [`MAX_AGE`], a backstop against anything unforeseen, and the map
//!   holds at most [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mesh::db::{Db, Notice};
use mesh::domain::CustomerId;

use crate::customer::Customer;

/// The notification channel of migration V11.
pub const CHANNEL: &str = "tenant_routing";
/// Longest time an entry is served, even without a notification.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Most entries kept; beyond it new results are simply not stored until entries expire or are
/// dropped (every tenant's numbers fit many times over: 20,000 numbers in the benchmark).
pub const MAX_ENTRIES: usize = 200_000;
/// Wait between two attempts to (re)open the listening connection.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// A cached resolution.
#[derive(Clone)]
pub struct Resolved {
    /// The owner of the number.
    pub id: CustomerId,
    /// Its core row (no numbers).
    pub customer: Arc<Customer>,
}

struct Entry {
    resolved: Resolved,
    stored_at: Instant,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every invalidation.
    generation: u64,
    entries: HashMap<(String, String), Entry>,
}

/// The cache; cheap to share behind an `Arc`.
#[derive(Default)]
pub struct RoutingCache {
    /// The listening connection is up and LISTENing: only then is the cache used.
    live: AtomicBool,
    inner: Mutex<Inner>,
}

/// Proof of when a database lookup started, for [`RoutingCache::store`].
#[derive(Debug, Clone, Copy)]
pub struct Ticket(Option<u64>);

impl RoutingCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the cache is in use (the listener is connected).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The cached resolution of `number` for `account_sid`, if any and fresh.
    pub fn get(&self, number: &str, account_sid: &str) -> Option<Resolved> {
        if !self.is_live() {
            return None;
        }
        let inner = self.lock();
        // A borrowed key without allocating: the map is keyed by owned pairs.
        let entry = inner
            .entries
            .get(&(number.to_owned(), account_sid.to_owned()))?;
        (entry.stored_at.elapsed() < MAX_AGE).then(|| entry.resolved.clone())
    }

    /// Call before reading the database; pass the ticket to [`RoutingCache::store`].
    pub fn ticket(&self) -> Ticket {
        if !self.is_live() {
            return Ticket(None);
        }
        Ticket(Some(self.lock().generation))
    }

    /// Stores what a lookup begun at `ticket` read, unless anything was invalidated since (or
    /// the cache was not live when it began).
    pub fn store(&self, ticket: Ticket, number: &str, account_sid: &str, resolved: Resolved) {
        let Ticket(Some(generation)) = ticket else {
            return;
        };
        if !self.is_live() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.retain(|_, e| e.stored_at.elapsed() < MAX_AGE);
            if inner.entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        inner.entries.insert(
            (number.to_owned(), account_sid.to_owned()),
            Entry {
                resolved,
                stored_at: Instant::now(),
            },
        );
    }

    /// Drops every entry of `customer`.
    pub fn invalidate_customer(&self, customer: CustomerId) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, e| e.resolved.id != customer);
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// Applies one notification payload: a customer id, or `*` for all.
    fn apply(&self, payload: &str) {
        match payload
            .parse::<i64>()
            .ok()
            .and_then(|id| CustomerId::new(id).ok())
        {
            Some(id) => self.invalidate_customer(id),
            None => self.invalidate_all(),
        }
    }

    fn set_live(&self, live: bool) {
        // Empty first, then live (or not live, then empty): no reader sees entries from before
        // the listener's gap.
        if live {
            self.invalidate_all();
            self.live.store(true, Ordering::Release);
        } else {
            self.live.store(false, Ordering::Release);
            self.invalidate_all();
        }
    }

    /// Number of entries (metrics, tests).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps the cache live for as long as it runs: listens on [`CHANNEL`], applies every
/// notification, and takes the cache out of use (and empties it) whenever the connection is
/// lost, reconnecting every second. `on_defaults` runs for `*` notifications too (the platform
/// defaults' own cache). Runs until the task is aborted.
pub async fn listen(db: Db, cache: Arc<RoutingCache>, on_defaults: impl Fn() + Send + 'static) {
    let mut logged_down = false;
    loop {
        match db.listen(&[CHANNEL]).await {
            Ok(mut notifications) => {
                cache.set_live(true);
                on_defaults();
                if std::mem::take(&mut logged_down) {
                    tracing::info!("routing cache listener reconnected; cache in use again");
                }
                while let Some(notice) = notifications.recv().await {
                    match notice {
                        Notice::Notification { payload, .. } => {
                            if payload == "*" {
                                on_defaults();
                            }
                            cache.apply(&payload);
                        }
                        Notice::Overflow => break,
                    }
                }
                cache.set_live(false);
                on_defaults();
                tracing::warn!(
                    "routing cache listener lost its connection; resolving from the database until it is back"
                );
                logged_down = true;
            }
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "routing cache listener cannot connect; resolving from the database");
                    logged_down = true;
                }
            }
        }
        tokio::time::sleep(RELISTEN_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerStatus;
    use crate::model::Overrides;

    fn resolved(id: i64) -> Resolved {
        let id = CustomerId::new(id).unwrap();
        Resolved {
            id,
            customer: Arc::new(Customer {
                id,
                email: String::new(),
                business_name: format!("Tenant {id}"),
                contact_name: String::new(),
                contact_phone: String::new(),
                package_tier: "starter".into(),
                status: CustomerStatus::Active,
                overrides: Overrides::default(),
                created_at: chrono::Utc::now(),
                updated_at: chrono::Utc::now(),
                numbers: Vec::new(),
            }),
        }
    }

    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn unused_until_live() {
        let cache = RoutingCache::default();
        let ticket = cache.ticket();
        cache.store(ticket, "+14155550101", ACCOUNT, resolved(1));
        assert!(cache.is_empty(), "nothing is stored while not live");
        cache.set_live(true);
        let ticket = cache.ticket();
        cache.store(ticket, "+14155550101", ACCOUNT, resolved(1));
        assert_eq!(cache.get("+14155550101", ACCOUNT).unwrap().id.get(), 1);
        assert!(
            cache
                .get("+14155550101", "AC0123456789abcdef0123456789abcdee")
                .is_none()
        );
        cache.set_live(false);
        assert!(cache.get("+14155550101", ACCOUNT).is_none());
        assert!(cache.is_empty(), "going down empties the cache");
    }

    #[test]
    fn a_lookup_that_raced_an_invalidation_is_not_stored() {
        let cache = RoutingCache::default();
        cache.set_live(true);
        let ticket = cache.ticket();
        // The change commits and its notification is handled while the lookup runs.
        cache.apply("1");
        cache.store(ticket, "+14155550101", ACCOUNT, resolved(1));
        assert!(cache.get("+14155550101", ACCOUNT).is_none());
    }

    #[test]
    fn notifications_drop_one_customer_or_all() {
        let cache = RoutingCache::default();
        cache.set_live(true);
        for (number, id) in [
            ("+14155550101", 1),
            ("+14155550102", 2),
            ("+14155550103", 2),
        ] {
            let t = cache.ticket();
            cache.store(t, number, ACCOUNT, resolved(id));
        }
        cache.apply("2");
        assert!(cache.get("+14155550101", ACCOUNT).is_some());
        assert!(cache.get("+14155550102", ACCOUNT).is_none());
        assert!(cache.get("+14155550103", ACCOUNT).is_none());
        cache.apply("*");
        assert!(cache.is_empty());
        // A payload that is not an id is treated as "everything changed".
        let t = cache.ticket();
        cache.store(t, "+14155550101", ACCOUNT, resolved(1));
        cache.apply("garbage");
        assert!(cache.is_empty());
    }
}
