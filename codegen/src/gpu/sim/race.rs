//! Race detection for the SIMT interpreter.
//!
//! Lockstep execution would hide races (the interpreter always runs one thread's
//! statement before the next thread's), so every memory access is recorded and
//! two accesses to one address conflict when at least one writes and they are
//! unordered: by different threads of one block within one barrier interval, or
//! by different blocks of the launch (blocks never synchronize). Atomic adds do
//! not conflict with each other.

use std::collections::HashMap;

/// Who accessed an address: the block (its linear index), the thread in it and
/// the barrier interval the block was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accessor {
    /// Linear block index in the grid.
    pub block: u64,
    /// Thread index in the block.
    pub thread: u32,
    /// Barriers the block had passed.
    pub interval: u64,
}

impl Accessor {
    /// Whether nothing orders the two accesses.
    fn unordered_with(&self, other: &Accessor) -> bool {
        self.block != other.block
            || (self.thread != other.thread && self.interval == other.interval)
    }
}

/// The kind of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A load.
    Read,
    /// A store.
    Write,
    /// An atomic read-modify-write.
    Atomic,
}

/// Readers of one address remembered exactly before they are summarized.
const MAX_TRACKED_READERS: usize = 8;

/// What is known about the accesses to one address.
#[derive(Clone, Debug, Default)]
struct History {
    /// The last plain store.
    write: Option<Accessor>,
    /// The last atomic update.
    atomic: Option<Accessor>,
    /// Loads since the last store (at most [`MAX_TRACKED_READERS`]).
    readers: Vec<Accessor>,
    /// More loads than tracked: any other writer conflicts.
    many_readers: bool,
}

/// The access history of one memory (a global buffer, or one block's shared array).
#[derive(Debug, Default)]
pub struct Tracker {
    history: HashMap<usize, History>,
}

/// Two conflicting accesses to one element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Race {
    /// The earlier access.
    pub first: (Accessor, Kind),
    /// The access that conflicts with it.
    pub second: (Accessor, Kind),
}

impl Tracker {
    /// Forgets everything (a new launch, or shared memory of a new block).
    pub fn clear(&mut self) {
        self.history.clear();
    }

    /// Records an access to element `index`, or returns the race it makes.
    pub fn record(&mut self, index: usize, who: Accessor, kind: Kind) -> Result<(), Race> {
        let h = self.history.entry(index).or_default();
        let race = |first: Accessor, first_kind: Kind| Race {
            first: (first, first_kind),
            second: (who, kind),
        };
        if let Some(w) = h.write {
            if w.unordered_with(&who) {
                return Err(race(w, Kind::Write));
            }
        }
        if kind != Kind::Atomic {
            if let Some(a) = h.atomic {
                if a.unordered_with(&who) {
                    return Err(race(a, Kind::Atomic));
                }
            }
        }
        if kind != Kind::Read {
            if let Some(r) = h.readers.iter().find(|r| r.unordered_with(&who)) {
                return Err(race(*r, Kind::Read));
            }
            if h.many_readers {
                return Err(race(h.readers[0], Kind::Read));
            }
        }
        match kind {
            Kind::Read => {
                if !h.readers.contains(&who) {
                    if h.readers.len() < MAX_TRACKED_READERS {
                        h.readers.push(who);
                    } else {
                        h.many_readers = true;
                    }
                }
            }
            Kind::Write => {
                h.write = Some(who);
                h.readers.clear();
                h.many_readers = false;
            }
            Kind::Atomic => h.atomic = Some(who),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u64, thread: u32, interval: u64) -> Accessor {
        Accessor {
            block,
            thread,
            interval,
        }
    }

    #[test]
    fn unordered_writes_race_and_barriers_order_them() {
        let mut t = Tracker::default();
        t.record(0, at(0, 0, 0), Kind::Write).unwrap();
        assert!(t.record(0, at(0, 1, 0), Kind::Read).is_err());
        t.record(0, at(0, 1, 1), Kind::Read).unwrap();
        t.record(0, at(0, 2, 1), Kind::Read).unwrap();
        assert!(t.record(0, at(0, 0, 1), Kind::Write).is_err());
        t.record(0, at(0, 0, 2), Kind::Write).unwrap();
        assert!(
            t.record(0, at(1, 0, 0), Kind::Read).is_err(),
            "another block"
        );
    }

    #[test]
    fn atomics_commute_but_not_with_plain_accesses() {
        let mut t = Tracker::default();
        t.record(3, at(0, 0, 0), Kind::Atomic).unwrap();
        t.record(3, at(1, 5, 0), Kind::Atomic).unwrap();
        assert!(t.record(3, at(2, 0, 0), Kind::Read).is_err());
    }
}
