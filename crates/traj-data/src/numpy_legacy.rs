//! numpy's legacy `RandomState` (MT19937), as far as papers use it to draw their splits:
//! `np.random.seed(s)`, `np.random.permutation(n)` and `np.random.choice(a, size, replace=False)`.
//! Reproducing those draws bit for bit lets a dataset here hold exactly the windows a paper trained
//! and tested on (EGNO's MD17 split, see [`crate::molecule`]).
//!
//! The algorithms follow numpy's documented legacy behaviour: `seed(s)` is MT19937's
//! `init_genrand(s)`; `shuffle` walks `i = n−1 … 1` and swaps `i` with `j = interval(i)`, where
//! `interval(max)` draws 32-bit outputs masked to the smallest `2^k − 1 ≥ max` until one is
//! `≤ max`; `choice(a, k, replace=False)` is `a[permutation(len(a))[:k]]`. The reference test
//! compares with numpy itself (`tests/fixtures/make_egno_split_fixture.py`).

use rand_mt::Mt;

/// numpy's `RandomState` after `np.random.seed(seed)`.
#[derive(Clone, Debug)]
pub struct RandomState {
    mt: Mt,
}

impl RandomState {
    /// `np.random.seed(seed)`.
    pub fn new(seed: u32) -> Self {
        Self { mt: Mt::new(seed) }
    }

    /// A uniform integer in `0..=max` (numpy's legacy `random_interval`).
    pub fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        // smallest 2^k − 1 ≥ max
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            loop {
                let v = u64::from(self.mt.next_u32()) & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            // numpy's legacy 64-bit draw: two 32-bit outputs, high word first
            let hi = u64::from(self.mt.next_u32());
            let v = ((hi << 32) | u64::from(self.mt.next_u32())) & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.shuffle(xs)` of a 1-d array.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.interval(i as u64) as usize;
            xs.swap(i, j);
        }
    }

    /// `np.random.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }

    /// `np.random.choice(a, size, replace=False)` (no weights): the first `size` entries of a
    /// permutation of `a`. `None` when `size > a.len()` (numpy raises).
    pub fn choice_without_replacement<T: Copy>(&mut self, a: &[T], size: usize) -> Option<Vec<T>> {
        if size > a.len() {
            return None;
        }
        let p = self.permutation(a.len());
        Some(p[..size].iter().map(|&i| a[i]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_outputs() {
        // MT19937's reference: init_genrand(5489) gives 3499211612 first; numpy's
        // `RandomState(5489).randint(0, 2**32, dtype=np.uint32)` agrees.
        let mut r = RandomState::new(5489);
        assert_eq!(r.mt.next_u32(), 3_499_211_612);
    }

    #[test]
    fn interval_stays_in_range_and_permutations_are_permutations() {
        let mut r = RandomState::new(100);
        for max in [0u64, 1, 2, 3, 7, 8, 1000, (1 << 33) + 5] {
            for _ in 0..50 {
                assert!(r.interval(max) <= max);
            }
        }
        let mut p = r.permutation(1000);
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
        assert!(r.choice_without_replacement(&[1, 2, 3], 4).is_none());
        assert_eq!(r.choice_without_replacement(&[1, 2, 3], 0), Some(vec![]));
    }
}
