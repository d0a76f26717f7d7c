//! A listener's connection slots: a limit for the listener and one for each client address, and,
//! where the listener asks for it, room made for a newcomer by closing a connection that is only
//! waiting.
//!
//! Why per address: without it, one client (a misbehaving station, a scanner, an attacker who
//! reached a port) takes every slot and each newcomer is refused, the container's health probe
//! and the load balancer's among them, which then restart or evict a healthy daemon. With it, one
//! address holds at most `max_connections_per_address` (half the listener's slots unless
//! configured), and the rest stay for the others.
//!
//! Why eviction: many addresses together can still fill a listener. The monitor must answer its
//! probe all the same, so when it is full a newcomer takes the slot of a connection that is idle
//! (waiting for a request's head, slow or silent, or kept alive between requests) from the address
//! holding the most slots, the oldest of them. A connection in the middle of a request is never
//! closed for another, and one newcomer closes at most one connection.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// A listener's limits: connections at once, and at once from one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_address: usize,
}

impl Limits {
    /// `total` slots of which one address may hold `per_address`, or half of them (at least one)
    /// when `None`.
    pub fn new(total: usize, per_address: Option<usize>) -> Limits {
        Limits {
            total,
            per_address: per_address.unwrap_or_else(|| (total / 2).max(1)),
        }
    }
}

/// Why a connection got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `limit` connections.
    Full { limit: usize },
    /// The connection's address holds `limit` of them.
    Address { address: IpAddr, limit: usize },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Full { limit } => {
                write!(f, "the listener is at its limit of {limit} connections")
            }
            Refused::Address { address, limit } => write!(
                f,
                "{address} holds this listener's limit of {limit} connections per address"
            ),
        }
    }
}

/// The slots of one listener, shared by its accept loop and its connections.
#[derive(Debug)]
pub(crate) struct Slots {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    taken: usize,
    by_address: HashMap<IpAddr, usize>,
    next_id: u64,
    /// The idle connections, oldest first: the ones a newcomer may take the place of.
    idle: BTreeMap<u64, Idle>,
}

#[derive(Debug)]
struct Idle {
    address: IpAddr,
    evict: CancellationToken,
}

impl Slots {
    pub fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            state: Mutex::default(),
        })
    }

    /// A slot for a connection from `address`, if both the listener and the address have one.
    pub fn take(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refused> {
        let mut state = self.lock();
        if let Some(refused) = self.refusal(&state, address) {
            return Err(refused);
        }
        Ok(self.grant(&mut state, address, false))
    }

    /// Like [`Slots::take`], but where that refuses, an idle connection is closed (its
    /// [`Slot::evicted`] is cancelled) and its slot given to this one: the oldest of the address's
    /// own when it is at its limit, else the oldest of the address holding the most. Refused when
    /// no such connection is idle. The slot starts idle: a newcomer is waiting for its request.
    pub fn take_or_evict(self: &Arc<Self>, address: IpAddr) -> Result<Slot, Refused> {
        let mut state = self.lock();
        if let Some(refused) = self.refusal(&state, address) {
            let own = matches!(refused, Refused::Address { .. });
            let victim = state
                .idle
                .iter()
                .filter(|(_, idle)| !own || idle.address == address)
                .max_by_key(|(id, idle)| {
                    let held = state.by_address.get(&idle.address).copied();
                    (held.unwrap_or(0), std::cmp::Reverse(**id))
                })
                .map(|(id, _)| *id);
            let idle = victim.and_then(|victim| state.idle.remove(&victim));
            let Some(idle) = idle else {
                return Err(refused);
            };
            idle.evict.cancel();
            state.release(idle.address);
        }
        Ok(self.grant(&mut state, address, true))
    }

    /// Why a connection from `address` gets no slot now, if it does not.
    fn refusal(&self, state: &State, address: IpAddr) -> Option<Refused> {
        let held = state.by_address.get(&address).copied().unwrap_or(0);
        if held >= self.limits.per_address {
            return Some(Refused::Address {
                address,
                limit: self.limits.per_address,
            });
        }
        let full = state.taken >= self.limits.total;
        full.then_some(Refused::Full {
            limit: self.limits.total,
        })
    }

    fn grant(self: &Arc<Self>, state: &mut State, address: IpAddr, idle: bool) -> Slot {
        state.taken += 1;
        *state.by_address.entry(address).or_default() += 1;
        state.next_id += 1;
        let slot = Slot {
            slots: Arc::clone(self),
            id: state.next_id,
            address,
            evict: CancellationToken::new(),
        };
        if idle {
            let evict = slot.evict.clone();
            state.idle.insert(slot.id, Idle { address, evict });
        }
        slot
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn release(&mut self, address: IpAddr) {
        self.taken -= 1;
        if let Some(held) = self.by_address.get_mut(&address) {
            *held -= 1;
            if *held == 0 {
                self.by_address.remove(&address);
            }
        }
    }
}

/// One connection's place in its listener, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    address: IpAddr,
    evict: CancellationToken,
}

impl Slot {
    /// Cancelled when a newcomer took this connection's place: it should close.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    /// Marks the connection as idle (a newcomer may take its place) or busy (serving a request).
    pub fn set_idle(&self, idle: bool) {
        let mut state = self.slots.lock();
        // Checked under the lock, where eviction happens: an evicted slot is no one's to take.
        if self.evict.is_cancelled() {
            return;
        }
        match idle {
            true => {
                let evict = self.evict.clone();
                let address = self.address;
                state.idle.insert(self.id, Idle { address, evict });
            }
            false => {
                state.idle.remove(&self.id);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.slots.lock();
        state.idle.remove(&self.id);
        // An evicted slot was given back when it was taken over.
        if !self.evict.is_cancelled() {
            state.release(self.address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_takes_at_most_its_share() {
        let slots = Slots::new(Limits::new(4, None));
        let a = [slots.take(address(2)), slots.take(address(2))];
        assert!(a.iter().all(Result::is_ok));
        assert_eq!(
            slots.take(address(2)).unwrap_err(),
            Refused::Address {
                address: address(2),
                limit: 2
            }
        );
        let b = [slots.take(address(3)), slots.take(address(3))];
        assert!(b.iter().all(Result::is_ok));
        assert_eq!(
            slots.take(address(4)).unwrap_err(),
            Refused::Full { limit: 4 }
        );
        drop(a);
        assert!(slots.take(address(4)).is_ok());
    }

    #[test]
    fn a_newcomer_takes_the_oldest_idle_slot_of_the_busiest_address() {
        let slots = Slots::new(Limits::new(4, Some(3)));
        let busy = slots.take(address(2)).unwrap();
        let older = slots.take_or_evict(address(3)).unwrap();
        let newer = slots.take(address(3)).unwrap();
        let lone = slots.take(address(4)).unwrap();
        for slot in [&newer, &lone] {
            slot.set_idle(true);
        }
        assert_eq!(
            slots.take(address(5)).unwrap_err(),
            Refused::Full { limit: 4 }
        );
        let probe = slots.take_or_evict(address(1)).unwrap();
        probe.set_idle(false);
        assert!(older.evicted().is_cancelled());
        assert!(!newer.evicted().is_cancelled() && !lone.evicted().is_cancelled());
        drop(older);
        // Still full: the evicted slot was given back once, to the probe.
        assert!(slots.take(address(5)).is_err());
        // Then 127.0.0.3 and 127.0.0.4 hold one each; the older of their idle ones goes.
        let second = slots.take_or_evict(address(1)).unwrap();
        second.set_idle(false);
        assert!(newer.evicted().is_cancelled());
        // A busy connection is never taken over.
        lone.set_idle(false);
        assert!(slots.take_or_evict(address(6)).is_err());
        assert!(!busy.evicted().is_cancelled() && !lone.evicted().is_cancelled());
        drop((newer, probe, second, busy, lone));
        assert_eq!(slots.lock().taken, 0);
        assert!(slots.lock().by_address.is_empty());
    }

    #[test]
    fn at_its_share_an_address_takes_the_place_of_its_own_idle_connection() {
        let slots = Slots::new(Limits::new(4, Some(2)));
        let other = slots.take_or_evict(address(3)).unwrap();
        let first = slots.take_or_evict(address(2)).unwrap();
        let second = slots.take_or_evict(address(2)).unwrap();
        let third = slots.take_or_evict(address(2)).unwrap();
        assert!(first.evicted().is_cancelled());
        assert!(!other.evicted().is_cancelled() && !second.evicted().is_cancelled());
        second.set_idle(false);
        third.set_idle(false);
        assert_eq!(
            slots.take_or_evict(address(2)).unwrap_err(),
            Refused::Address {
                address: address(2),
                limit: 2
            }
        );
        drop((other, first, second, third));
        assert_eq!(slots.lock().taken, 0);
        assert!(slots.lock().by_address.is_empty());
    }
}
