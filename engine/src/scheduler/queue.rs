//! An ordered queue of sequence ids, used for both the waiting and the running set.
//!
//! Owns ordering only: entries are kept sorted by `(priority, arrival)` (smaller first), so the
//! head is the next sequence to admit and the tail is the next to preempt. Knows nothing about
//! tokens or blocks.

use super::SeqId;

/// Sort key of a sequence: lower `priority` value first, then earlier arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct QueueKey {
    /// Smaller is served earlier (vLLM's convention).
    pub(super) priority: i32,
    /// Unique, increasing with every `Scheduler::add` call.
    pub(super) arrival: u64,
}

/// Sequence ids sorted by [`QueueKey`]. Insertion and removal are O(n), fine for the hundreds of
/// sequences a step handles.
#[derive(Debug, Default)]
pub(super) struct SeqQueue {
    entries: Vec<(QueueKey, SeqId)>,
}

impl SeqQueue {
    /// Inserts `seq_id` at the position given by `key`.
    pub(super) fn insert(&mut self, key: QueueKey, seq_id: SeqId) {
        let idx = self.entries.partition_point(|(k, _)| *k <= key);
        self.entries.insert(idx, (key, seq_id));
    }

    /// Removes `seq_id`; returns whether it was present.
    pub(super) fn remove(&mut self, seq_id: SeqId) -> bool {
        match self.entries.iter().position(|&(_, id)| id == seq_id) {
            Some(idx) => {
                self.entries.remove(idx);
                true
            }
            None => false,
        }
    }

    /// The id at position `idx` (0 = head).
    pub(super) fn get(&self, idx: usize) -> Option<SeqId> {
        self.entries.get(idx).map(|&(_, id)| id)
    }

    /// The id at the tail (largest key).
    pub(super) fn last(&self) -> Option<SeqId> {
        self.entries.last().map(|&(_, id)| id)
    }

    /// Number of queued ids.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue is empty.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(priority: i32, arrival: u64) -> QueueKey {
        QueueKey { priority, arrival }
    }

    #[test]
    fn orders_by_priority_then_arrival() {
        let mut q = SeqQueue::default();
        q.insert(key(0, 3), 30);
        q.insert(key(1, 1), 10);
        q.insert(key(0, 2), 20);
        q.insert(key(-1, 4), 40);
        let order: Vec<_> = (0..q.len()).filter_map(|i| q.get(i)).collect();
        assert_eq!(order, vec![40, 20, 30, 10]);
        assert_eq!(q.last(), Some(10));
        assert!(q.remove(20));
        assert!(!q.remove(20));
        assert_eq!(q.get(1), Some(30));
        assert_eq!(q.len(), 3);
        assert!(!q.is_empty());
    }
}
