//! Sets of cart lines as bitsets: which lines a rule can reach (from the index) and which lines
//! each of its benefits targets, computed once per evaluation so that trial runs and the final
//! application visit only those lines and never compare product, group or brand ids again.

/// Words of 64 lines each.
pub(super) fn words(lines: usize) -> usize {
    lines.div_ceil(64)
}

/// A set of line indexes (a borrowed bitset).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lines<'a>(pub(super) &'a [u64]);

impl<'a> Lines<'a> {
    pub(super) fn any(self) -> bool {
        self.0.iter().any(|w| *w != 0)
    }

    pub(super) fn contains(self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The line indexes in increasing order.
    pub(super) fn iter(self) -> impl Iterator<Item = usize> + 'a {
        self.0.iter().enumerate().flat_map(|(k, w)| {
            let mut w = *w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(k * 64 + bit)
            })
        })
    }
}

pub(super) fn set(words: &mut [u64], i: usize) {
    words[i / 64] |= 1 << (i % 64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_set_lists_its_lines_in_order_across_words() {
        let mut w = vec![0u64; words(130)];
        assert_eq!(w.len(), 3);
        assert!(!Lines(&w).any());
        for i in [129, 0, 63, 64, 5] {
            set(&mut w, i);
        }
        let l = Lines(&w);
        assert!(l.any());
        assert_eq!(l.iter().collect::<Vec<_>>(), vec![0, 5, 63, 64, 129]);
        assert!(l.contains(64) && l.contains(129) && !l.contains(1) && !l.contains(500));
    }
}
