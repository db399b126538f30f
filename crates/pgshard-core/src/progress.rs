//! The progress board of long operations (shard moves and splits): a fixed table of entries,
//! one per running operation, kept in shared memory so that any session can look.

/// What an operation is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Phase {
    #[default]
    Starting,
    Copying,
    CatchingUp,
    /// Holding the group's writes back for the last changes and the catalog switch.
    Switching,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Copying => "copying rows",
            Phase::CatchingUp => "catching up",
            Phase::Switching => "switching (writes paused)",
        }
    }
}

/// One running operation; `pid` 0 marks a free entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entry {
    pub pid: i32,
    /// "move" or "split", as a fixed byte string (shared memory holds no pointers).
    pub operation: [u8; 8],
    pub shard_id: i64,
    pub phase: Phase,
    pub rows_copied: i64,
    pub rows_total: i64,
    /// When it started, as PostgreSQL's TimestampTz.
    pub started_at: i64,
}

impl Entry {
    pub fn operation(&self) -> &str {
        let end = self.operation.iter().position(|&b| b == 0).unwrap_or(8);
        std::str::from_utf8(&self.operation[..end]).unwrap_or("?")
    }

    /// Rows the copy still has to go (never negative: rows written meanwhile are copied too).
    pub fn rows_to_go(&self) -> i64 {
        (self.rows_total - self.rows_copied).max(0)
    }
}

/// Up to `N` operations at once.
#[derive(Debug, Clone, Copy)]
pub struct Board<const N: usize> {
    entries: [Entry; N],
}

impl<const N: usize> Default for Board<N> {
    fn default() -> Self {
        Board {
            entries: [Entry::default(); N],
        }
    }
}

impl<const N: usize> Board<N> {
    /// Enters an operation of backend `pid`, replacing an entry it left (or one of a backend
    /// that `alive` says is gone, which ended without leaving); false when the board is full.
    pub fn begin(
        &mut self,
        pid: i32,
        operation: &str,
        shard_id: i64,
        started_at: i64,
        alive: impl Fn(i32) -> bool,
    ) -> bool {
        let free = self.entries.iter().position(|e| e.pid == pid).or_else(|| {
            self.entries
                .iter()
                .position(|e| e.pid == 0 || !alive(e.pid))
        });
        let Some(index) = free else {
            return false;
        };
        let mut name = [0u8; 8];
        let bytes = operation.as_bytes();
        let len = bytes.len().min(8);
        name[..len].copy_from_slice(&bytes[..len]);
        self.entries[index] = Entry {
            pid,
            operation: name,
            shard_id,
            started_at,
            ..Entry::default()
        };
        true
    }

    /// Changes the entry of backend `pid`, if it has one.
    pub fn update(&mut self, pid: i32, change: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.pid == pid) {
            change(entry);
        }
    }

    /// Removes the entry of backend `pid`.
    pub fn end(&mut self, pid: i32) {
        for entry in self.entries.iter_mut().filter(|e| e.pid == pid) {
            *entry = Entry::default();
        }
    }

    /// The entries of running operations (of backends that `alive` says exist).
    pub fn running(&self, alive: impl Fn(i32) -> bool) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| e.pid != 0 && alive(e.pid))
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_and_go_with_their_operations() {
        let mut board = Board::<2>::default();
        assert!(board.begin(10, "move", 100001, 5, |_| true));
        assert!(board.begin(11, "split", 100002, 6, |_| true));
        assert!(!board.begin(12, "move", 100003, 7, |_| true), "full");
        board.update(11, |e| {
            e.phase = Phase::Copying;
            e.rows_total = 100;
            e.rows_copied = 40;
        });
        let running = board.running(|_| true);
        assert_eq!(running.len(), 2);
        let split = running.iter().find(|e| e.pid == 11).unwrap();
        assert_eq!(split.operation(), "split");
        assert_eq!(split.phase.name(), "copying rows");
        assert_eq!(split.rows_to_go(), 60);
        board.end(10);
        assert_eq!(board.running(|_| true).len(), 1);
        assert!(
            board.begin(12, "move", 100003, 7, |_| true),
            "a freed entry is reused"
        );
    }

    #[test]
    fn entries_of_vanished_backends_are_hidden_and_reused() {
        let mut board = Board::<1>::default();
        assert!(board.begin(10, "split", 100001, 5, |_| true));
        let gone = |pid: i32| pid != 10;
        assert!(board.running(gone).is_empty());
        assert!(board.begin(12, "move", 100002, 6, gone));
        assert_eq!(board.running(|_| true)[0].pid, 12);
        let mut copied = Entry::default();
        copied.rows_total = 5;
        copied.rows_copied = 9;
        assert_eq!(copied.rows_to_go(), 0);
    }
}
