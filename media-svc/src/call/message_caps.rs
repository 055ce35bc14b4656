//! The process-local side of the caps on message-taking calls: the configured caps, and a count
//! of the calls this process let into the message flow while PostgreSQL, where the caps are
//! counted across replicas ([`crate::store::message_calls`]), could not be asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mesh::domain::CustomerId;

use crate::store::message_calls::Caps;

/// The caps on message-taking calls (`MEDIA_MESSAGE_CALLS_PER_TENANT`, `MEDIA_MESSAGE_CALLS_MAX`),
/// and a per-process count of the calls let into the message flow while PostgreSQL, where the
/// caps are counted across replicas, could not be asked: those are held to the caps within this
/// process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MessageCaps {
    inner: Arc<Mutex<CapState>>,
}

#[derive(Debug)]
struct CapState {
    per_tenant: u32,
    platform: u32,
    total: u32,
    by_tenant: HashMap<CustomerId, u32>,
}

/// One message-taking call's place under the caps, given back when dropped.
#[derive(Debug)]
pub struct MessageSlot {
    caps: MessageCaps,
    customer: CustomerId,
}

impl MessageCaps {
    /// Caps of `per_tenant` message-taking calls per tenant and `platform` in all.
    pub fn new(per_tenant: u32, platform: u32) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CapState {
                per_tenant,
                platform,
                total: 0,
                by_tenant: HashMap::new(),
            })),
        }
    }

    /// A place for one more message-taking call of `customer`; `None` at either cap.
    pub fn try_acquire(&self, customer: CustomerId) -> Option<MessageSlot> {
        let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mine = s.by_tenant.get(&customer).copied().unwrap_or(0);
        if s.total >= s.platform || mine >= s.per_tenant {
            return None;
        }
        s.total += 1;
        s.by_tenant.insert(customer, mine + 1);
        Some(MessageSlot {
            caps: self.clone(),
            customer,
        })
    }

    /// The caps, as the database counts them.
    pub fn caps(&self) -> Caps {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Caps {
            per_tenant: s.per_tenant,
            platform: s.platform,
        }
    }

    /// Message-taking calls let in by this process without the database, running now.
    pub fn in_use(&self) -> u32 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for MessageSlot {
    fn drop(&mut self) {
        let mut s = self.caps.inner.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.by_tenant.get_mut(&self.customer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.by_tenant.remove(&self.customer);
            }
        }
    }
}
