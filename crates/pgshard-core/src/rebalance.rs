//! Planning shard moves so that every worker holds a fair share of the data.
//!
//! The unit is a shard group (the shards of one co-location group with one hash range: they
//! move together). Workers being drained give away every group and receive none; then, while
//! it narrows the gap, the group that brings the most and the least loaded worker closest to
//! even moves from the one to the other. Each move strictly lowers the sum of squared loads, so
//! the plan is finite, and an already balanced cluster gets no move at all.

/// A shard group where it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Any shard of the group (moving it moves the group).
    pub shard_id: i64,
    /// Index of its worker.
    pub worker: usize,
    pub bytes: u64,
}

/// One planned move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub shard_id: i64,
    pub from: usize,
    pub to: usize,
    pub bytes: u64,
}

/// The moves, in order, for `workers` workers of which `draining` must end up empty.
pub fn plan(groups: &[Group], workers: usize, draining: &[usize]) -> Vec<Move> {
    let targets: Vec<usize> = (0..workers).filter(|w| !draining.contains(w)).collect();
    if targets.is_empty() {
        return Vec::new();
    }
    // Empty shards still count, so that a cluster of empty tables is balanced by count.
    let weight = |g: &Group| g.bytes.max(1);
    let mut placed: Vec<Group> = groups.to_vec();
    let mut loads = vec![0u64; workers];
    for g in &placed {
        loads[g.worker] += weight(g);
    }
    let mut moves = Vec::new();
    let mut shift = |placed: &mut Vec<Group>, loads: &mut Vec<u64>, i: usize, to: usize| {
        let g = &mut placed[i];
        loads[g.worker] -= weight(g);
        loads[to] += weight(g);
        moves.push(Move {
            shard_id: g.shard_id,
            from: g.worker,
            to,
            bytes: g.bytes,
        });
        g.worker = to;
    };
    let least_loaded = |loads: &[u64]| {
        *targets
            .iter()
            .min_by_key(|&&w| (loads[w], w))
            .expect("at least one target")
    };

    let mut leaving: Vec<usize> = (0..placed.len())
        .filter(|&i| draining.contains(&placed[i].worker))
        .collect();
    leaving.sort_by_key(|&i| (std::cmp::Reverse(weight(&placed[i])), placed[i].shard_id));
    for i in leaving {
        let to = least_loaded(&loads);
        shift(&mut placed, &mut loads, i, to);
    }

    for _ in 0..placed.len() * workers {
        let from = *targets
            .iter()
            .max_by_key(|&&w| (loads[w], std::cmp::Reverse(w)))
            .expect("at least one target");
        let to = least_loaded(&loads);
        let gap = loads[from] - loads[to];
        // Moving w bytes leaves the two |gap - 2w| apart: better only when 0 < w < gap.
        let best = (0..placed.len())
            .filter(|&i| placed[i].worker == from && weight(&placed[i]) < gap)
            .min_by_key(|&i| {
                (
                    (gap as i128 - 2 * weight(&placed[i]) as i128).unsigned_abs(),
                    placed[i].shard_id,
                )
            });
        match best {
            Some(i) => shift(&mut placed, &mut loads, i, to),
            None => break,
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(layout: &[(usize, u64)]) -> Vec<Group> {
        layout
            .iter()
            .enumerate()
            .map(|(i, &(worker, bytes))| Group {
                shard_id: 100 + i as i64,
                worker,
                bytes,
            })
            .collect()
    }

    fn loads_after(groups: &[Group], moves: &[Move], workers: usize) -> Vec<u64> {
        let mut loads = vec![0; workers];
        for g in groups {
            let worker = moves
                .iter()
                .rev()
                .find(|m| m.shard_id == g.shard_id)
                .map_or(g.worker, |m| m.to);
            loads[worker] += g.bytes;
        }
        loads
    }

    #[test]
    fn a_new_worker_gets_a_fair_share() {
        // 8 equal groups on 2 workers, a third worker added empty.
        let g = groups(&[(0, 10), (1, 10), (0, 10), (1, 10), (0, 10), (1, 10), (0, 10), (1, 10)]);
        let moves = plan(&g, 3, &[]);
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|m| m.to == 2));
        let loads = loads_after(&g, &moves, 3);
        assert_eq!(loads.iter().max().unwrap() - loads.iter().min().unwrap(), 10);
    }

    #[test]
    fn a_balanced_cluster_needs_no_move() {
        let g = groups(&[(0, 10), (1, 10), (0, 10), (1, 10)]);
        assert!(plan(&g, 2, &[]).is_empty());
        // Uneven sizes that no single move improves.
        let g = groups(&[(0, 30), (1, 20), (1, 5)]);
        assert!(plan(&g, 2, &[]).is_empty());
    }

    #[test]
    fn the_group_closest_to_half_the_gap_moves() {
        let g = groups(&[(0, 50), (0, 30), (0, 8), (1, 0)]);
        let moves = plan(&g, 2, &[]);
        // 88 against 0 (the empty group counts 1): moving 50 leaves 38/51, closer than 30 would.
        assert_eq!(moves[0].shard_id, 100);
        let loads = loads_after(&g, &moves, 2);
        assert!(loads[0].abs_diff(loads[1]) <= 12, "{loads:?}");
    }

    #[test]
    fn draining_empties_a_worker_onto_the_others() {
        let g = groups(&[(0, 10), (1, 10), (2, 40), (2, 5), (0, 10)]);
        let moves = plan(&g, 3, &[2]);
        assert!(moves.iter().all(|m| m.to != 2));
        let loads = loads_after(&g, &moves, 3);
        assert_eq!(loads[2], 0);
        assert_eq!(loads[0] + loads[1], 75);
        // Nowhere to go: nothing planned.
        assert!(plan(&g, 1, &[0]).is_empty());
    }

    #[test]
    fn empty_groups_balance_by_count() {
        let g = groups(&[(0, 0), (0, 0), (0, 0), (0, 0)]);
        let moves = plan(&g, 2, &[]);
        assert_eq!(moves.len(), 2);
    }
}
