//! Per-shard statement counters, kept in a fixed-size table (it lives in shared memory, so it
//! cannot grow): open addressing by shard id, linear probing.

/// One shard's counters; `shard_id` 0 marks a free slot (shard ids start at 100001).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slot {
    pub shard_id: i64,
    pub reads: u64,
    pub writes: u64,
}

/// Counters of up to `N` shards.
#[derive(Debug, Clone, Copy)]
pub struct ShardCounters<const N: usize> {
    slots: [Slot; N],
    /// Counts that found the table full (more shards than slots).
    pub dropped: u64,
}

impl<const N: usize> Default for ShardCounters<N> {
    fn default() -> Self {
        ShardCounters {
            slots: [Slot::default(); N],
            dropped: 0,
        }
    }
}

impl<const N: usize> ShardCounters<N> {
    fn home(shard_id: i64) -> usize {
        // Shard ids are sequential: a multiplicative hash spreads neighbours apart.
        ((shard_id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % N
    }

    /// Adds statements routed to `shard_id`.
    pub fn add(&mut self, shard_id: i64, reads: u64, writes: u64) {
        let home = Self::home(shard_id);
        for probe in 0..N {
            let slot = &mut self.slots[(home + probe) % N];
            if slot.shard_id == shard_id || slot.shard_id == 0 {
                slot.shard_id = shard_id;
                slot.reads += reads;
                slot.writes += writes;
                return;
            }
        }
        self.dropped += reads + writes;
    }

    /// The counters of `shard_id` (zero when it has none).
    pub fn get(&self, shard_id: i64) -> Slot {
        let home = Self::home(shard_id);
        for probe in 0..N {
            let slot = self.slots[(home + probe) % N];
            if slot.shard_id == shard_id {
                return slot;
            }
            if slot.shard_id == 0 {
                break;
            }
        }
        Slot {
            shard_id,
            ..Slot::default()
        }
    }

    /// Every shard with counters.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.shard_id != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accumulate_per_shard() {
        let mut counters = ShardCounters::<64>::default();
        counters.add(100001, 1, 0);
        counters.add(100002, 0, 1);
        counters.add(100001, 2, 3);
        assert_eq!(counters.get(100001), Slot { shard_id: 100001, reads: 3, writes: 3 });
        assert_eq!(counters.get(100002).writes, 1);
        assert_eq!(counters.get(999).reads, 0);
        assert_eq!(counters.iter().count(), 2);
    }

    #[test]
    fn a_full_table_keeps_its_shards_and_counts_what_it_drops() {
        let mut counters = ShardCounters::<4>::default();
        for id in 100001..100005 {
            counters.add(id, 1, 0);
        }
        counters.add(100009, 1, 1);
        assert_eq!(counters.dropped, 2);
        for id in 100001..100005 {
            assert_eq!(counters.get(id).reads, 1, "shard {id}");
        }
        counters.add(100003, 1, 0);
        assert_eq!(counters.get(100003).reads, 2);
    }
}
