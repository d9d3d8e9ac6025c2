//! Race detection for the SIMT interpreter.
//!
//! Lockstep execution would hide races (the interpreter always runs one thread's
//! statement before the next thread's), so every memory access is recorded and
//! two accesses to one address conflict when at least one writes and they are
//! unordered: by different threads of one block within one barrier interval, or
//! by different blocks of the launch (blocks never synchronize). Atomic adds do
//! not conflict with each other.
//!
//! The history is dense (one small record per element, allocated on the first
//! access) and keeps the last store, the last atomic update and a summary of the
//! loads since the store: the last reader, whether other threads of its block read
//! in the same interval, and another block that read. The summary is exact for
//! the patterns kernels use (one thread per element, reads shared by a block or by
//! every block) and errs toward reporting a race otherwise.

/// Who accessed an address: the block (its linear index), the thread in it and
/// the barrier interval the block was in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accessor {
    /// Linear block index in the grid.
    pub block: u32,
    /// Thread index in the block.
    pub thread: u32,
    /// Barriers the block had passed.
    pub interval: u32,
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

/// What is known about the accesses to one element.
#[derive(Clone, Copy, Debug, Default)]
struct History {
    /// The last plain store.
    write: Option<Accessor>,
    /// The last atomic update.
    atomic: Option<Accessor>,
    /// The last load since the store.
    reader: Option<Accessor>,
    /// Other threads of `reader`'s block loaded it in `reader`'s interval.
    readers_in_block: bool,
    /// A block other than `reader`'s loaded it since the store.
    other_block: Option<u32>,
}

/// The access history of one memory (a global buffer, or one block's shared array).
#[derive(Debug)]
pub struct Tracker {
    len: usize,
    history: Vec<History>,
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
    /// A tracker for a memory of `len` elements (nothing is allocated before the
    /// first access).
    pub fn new(len: usize) -> Tracker {
        Tracker {
            len,
            history: Vec::new(),
        }
    }

    /// Forgets everything (shared memory at a barrier, or of a new block).
    pub fn clear(&mut self) {
        self.history.clear();
    }

    /// Records an access to element `index` (< the memory's length), or returns
    /// the race it makes.
    pub fn record(&mut self, index: usize, who: Accessor, kind: Kind) -> Result<(), Race> {
        if self.history.is_empty() {
            self.history = vec![History::default(); self.len];
        }
        let h = &mut self.history[index];
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
            if let Some(r) = h.reader {
                let same_interval = r.block == who.block && r.interval == who.interval;
                let conflict = r.unordered_with(&who) || (same_interval && h.readers_in_block);
                if conflict {
                    return Err(race(r, Kind::Read));
                }
            }
            if let Some(b) = h.other_block.filter(|&b| b != who.block) {
                let reader = Accessor {
                    block: b,
                    thread: 0,
                    interval: 0,
                };
                return Err(race(reader, Kind::Read));
            }
        }
        match kind {
            Kind::Read => match h.reader {
                Some(r) if r.block == who.block && r.interval == who.interval => {
                    if r.thread != who.thread {
                        h.readers_in_block = true;
                    }
                }
                Some(r) => {
                    if r.block != who.block {
                        h.other_block = Some(r.block);
                    }
                    h.reader = Some(who);
                    h.readers_in_block = false;
                }
                None => h.reader = Some(who),
            },
            Kind::Write => {
                *h = History {
                    write: Some(who),
                    atomic: h.atomic,
                    ..History::default()
                };
            }
            Kind::Atomic => h.atomic = Some(who),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(block: u32, thread: u32, interval: u32) -> Accessor {
        Accessor {
            block,
            thread,
            interval,
        }
    }

    #[test]
    fn unordered_writes_race_and_barriers_order_them() {
        let mut t = Tracker::new(4);
        t.record(0, at(0, 0, 0), Kind::Write).unwrap();
        assert!(t.record(0, at(0, 1, 0), Kind::Read).is_err());
        t.record(0, at(0, 1, 1), Kind::Read).unwrap();
        t.record(0, at(0, 2, 1), Kind::Read).unwrap();
        assert!(
            t.record(0, at(0, 1, 1), Kind::Write).is_err(),
            "thread 2 read"
        );
        t.record(0, at(0, 0, 2), Kind::Write).unwrap();
        assert!(
            t.record(0, at(1, 0, 0), Kind::Read).is_err(),
            "another block"
        );
    }

    #[test]
    fn a_thread_may_read_then_write_its_own_element() {
        let mut t = Tracker::new(2);
        t.record(1, at(3, 7, 0), Kind::Read).unwrap();
        t.record(1, at(3, 7, 0), Kind::Write).unwrap();
        t.record(1, at(3, 7, 0), Kind::Read).unwrap();
    }

    #[test]
    fn reads_by_every_block_conflict_only_with_a_write() {
        let mut t = Tracker::new(1);
        for b in 0..4 {
            t.record(0, at(b, 0, 0), Kind::Read).unwrap();
        }
        assert!(t.record(0, at(3, 0, 1), Kind::Write).is_err());
    }

    #[test]
    fn atomics_commute_but_not_with_plain_accesses() {
        let mut t = Tracker::new(4);
        t.record(3, at(0, 0, 0), Kind::Atomic).unwrap();
        t.record(3, at(1, 5, 0), Kind::Atomic).unwrap();
        assert!(t.record(3, at(2, 0, 0), Kind::Read).is_err());
    }
}
