//! Bulk-generated voucher codes (GenerateVoucherCodes): drawn in memory, unique among
//! themselves and against the partner's taken codes, and laid out in hash buckets. A
//! generation is stored as one row per bucket holding that bucket's codes (sorted, fixed
//! width, concatenated), not one row per code: a lookup by code reads the code's bucket, one
//! small row per generation. A code's index in the layout (bucket-major, then code order)
//! gives its voucher id: the generation's first voucher id plus the index.
use super::{CodeSpec, FastRng};

/// Buckets of the layout; a power of two. Changing it changes where stored codes are looked
/// up: it is part of the stored format.
pub const BUCKETS: u32 = 16_384;

/// The bucket of a code (FNV-1a, 32 bits, masked): stable across builds and databases.
pub fn bucket_of(code: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in code {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & (BUCKETS - 1)
}

/// The codes of one bucket within a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRange {
    pub bucket: u32,
    /// Index of the bucket's first code in the generation.
    pub first_index: u32,
    pub count: u32,
}

/// Codes drawn for one generation, in layout order.
#[derive(Debug, Clone, Default)]
pub struct DrawnCodes {
    pub code_len: usize,
    /// All codes, `code_len` bytes each, ordered by (bucket, code).
    pub codes: Vec<u8>,
    /// The non-empty buckets, in order.
    pub buckets: Vec<BucketRange>,
    /// Codes drawn again: duplicates of the same draw and codes already taken.
    pub collisions: u64,
}

impl DrawnCodes {
    pub fn len(&self) -> usize {
        self.codes.len().checked_div(self.code_len).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The code at layout index `i`.
    pub fn code(&self, i: usize) -> &[u8] {
        &self.codes[i * self.code_len..(i + 1) * self.code_len]
    }

    /// The concatenated codes of one bucket.
    pub fn bucket_codes(&self, r: &BucketRange) -> &[u8] {
        let from = r.first_index as usize * self.code_len;
        &self.codes[from..from + r.count as usize * self.code_len]
    }
}

/// Draw rounds that add no new code before the code space counts as exhausted.
const BARREN_ROUNDS: u32 = 5;
/// Codes drawn at least per round.
const MIN_DRAWS: usize = 256;

/// Draws exactly `count` distinct codes of `spec` none of which is `taken`; duplicates and
/// taken codes are drawn again (counted in `collisions`). `None` when rounds of drawing stop
/// finding new codes (the pattern's codes are nearly all taken).
pub fn draw_unique(
    spec: &CodeSpec,
    count: usize,
    rng: &mut FastRng,
    taken: impl Fn(&[u8]) -> bool,
) -> Option<DrawnCodes> {
    let len = spec.code_len();
    let mut pool: Vec<u8> = Vec::with_capacity(len * count);
    // (bucket, index of the code in `pool`), kept sorted and distinct after each round.
    let mut keep: Vec<(u32, u32)> = Vec::with_capacity(count);
    let mut collisions = 0u64;
    let mut barren = 0;
    while keep.len() < count {
        let have = keep.len();
        let start = pool.len() / len;
        let want = count - have;
        // The last few codes of a nearly full space are found by drawing more than wanted;
        // the extra ones are dropped below.
        let draws = want.max(MIN_DRAWS);
        for _ in 0..draws {
            spec.draw(rng, &mut pool);
        }
        let at = |i: u32| &pool[i as usize * len..(i as usize + 1) * len];
        for i in start..start + draws {
            let i = u32::try_from(i).ok()?;
            let c = at(i);
            if taken(c) {
                collisions += 1;
            } else {
                keep.push((bucket_of(c), i));
            }
        }
        // Equal codes sort oldest first, so the dedup keeps the code already kept.
        keep.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| at(a.1).cmp(at(b.1)))
                .then(a.1.cmp(&b.1))
        });
        let before = keep.len();
        keep.dedup_by(|a, b| a.0 == b.0 && at(a.1) == at(b.1));
        collisions += (before - keep.len()) as u64;
        if keep.len() > count {
            // Keep the first drawn of this round's new codes.
            let mut new: Vec<u32> = keep
                .iter()
                .map(|k| k.1)
                .filter(|i| *i as usize >= start)
                .collect();
            new.sort_unstable();
            let last = new[want - 1];
            keep.retain(|k| (k.1 as usize) < start || k.1 <= last);
        }
        if keep.len() <= have {
            barren += 1;
            if barren >= BARREN_ROUNDS {
                return None;
            }
        } else {
            barren = 0;
        }
    }
    let mut out = DrawnCodes {
        code_len: len,
        codes: Vec::with_capacity(len * count),
        buckets: Vec::new(),
        collisions,
    };
    for (n, (bucket, i)) in keep.iter().enumerate() {
        out.codes
            .extend_from_slice(&pool[*i as usize * len..(*i as usize + 1) * len]);
        let n = u32::try_from(n).ok()?;
        match out.buckets.last_mut() {
            Some(r) if r.bucket == *bucket => r.count += 1,
            _ => out.buckets.push(BucketRange {
                bucket: *bucket,
                first_index: n,
                count: 1,
            }),
        }
    }
    Some(out)
}

/// Position of `code` among a bucket's concatenated, sorted codes of width `len`.
pub fn find_in_bucket(codes: &[u8], len: usize, code: &[u8]) -> Option<usize> {
    if len == 0 || code.len() != len || !codes.len().is_multiple_of(len) {
        return None;
    }
    let n = codes.len() / len;
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match codes[mid * len..(mid + 1) * len].cmp(code) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::CodeRequest;
    use super::*;
    use loyalty_platform::Violations;
    use std::collections::HashSet;

    fn spec(pattern: &str, charset: &str) -> CodeSpec {
        CodeSpec::parse(
            &mut Violations::new(),
            &CodeRequest {
                prefix: String::new(),
                pattern: pattern.into(),
                charset: charset.into(),
                length: 0,
            },
        )
        .expect("valid spec")
    }

    #[test]
    fn draws_exactly_the_count_of_distinct_codes_in_bucket_order() {
        let s = spec("GOLD-####-????", "");
        let d = draw_unique(&s, 20_000, &mut FastRng::seeded(1), |_| false).unwrap();
        assert_eq!(d.len(), 20_000);
        let all: HashSet<&[u8]> = (0..d.len()).map(|i| d.code(i)).collect();
        assert_eq!(all.len(), 20_000);
        for w in (0..d.len()).collect::<Vec<_>>().windows(2) {
            let (a, b) = (d.code(w[0]), d.code(w[1]));
            assert!((bucket_of(a), a) < (bucket_of(b), b));
        }
        let mut next = 0;
        for r in &d.buckets {
            assert_eq!(r.first_index, next);
            next += r.count;
            let codes = d.bucket_codes(r);
            for k in 0..r.count as usize {
                let c = &codes[k * d.code_len..(k + 1) * d.code_len];
                assert_eq!(bucket_of(c), r.bucket);
                assert_eq!(find_in_bucket(codes, d.code_len, c), Some(k));
            }
        }
        assert_eq!(next, 20_000);
    }

    #[test]
    fn a_small_code_space_is_filled_with_collisions_drawn_again() {
        // 2 characters × 4 positions = 16 codes, 4 of them taken: 12 are left, all drawn.
        let s = spec("AAAA-****", "XY");
        let taken: HashSet<Vec<u8>> = ["AAAA-XXXX", "AAAA-XXXY", "AAAA-YYYY", "AAAA-YXYX"]
            .iter()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let d = draw_unique(&s, 12, &mut FastRng::seeded(7), |c| taken.contains(c)).unwrap();
        assert_eq!(d.len(), 12);
        assert!(d.collisions > 0);
        let got: HashSet<Vec<u8>> = (0..12).map(|i| d.code(i).to_vec()).collect();
        assert_eq!(got.len(), 12);
        assert!(got.is_disjoint(&taken));
    }

    #[test]
    fn a_dense_space_with_many_taken_codes_still_gives_the_exact_count() {
        // 8^4 × 24 = 98,304 codes; 10,000 taken, 10,000 more drawn: duplicates of codes kept
        // earlier must never displace them.
        let s = spec("GOLD-####-?", "");
        let first = draw_unique(&s, 10_000, &mut FastRng::seeded(5), |_| false).unwrap();
        let taken: HashSet<Vec<u8>> = (0..first.len()).map(|i| first.code(i).to_vec()).collect();
        let second =
            draw_unique(&s, 10_000, &mut FastRng::seeded(6), |c| taken.contains(c)).unwrap();
        let got: HashSet<Vec<u8>> = (0..second.len()).map(|i| second.code(i).to_vec()).collect();
        assert_eq!(got.len(), 10_000);
        assert!(got.is_disjoint(&taken));
        assert!(second.collisions > 0);
    }

    #[test]
    fn an_exhausted_code_space_is_refused_instead_of_looping() {
        let s = spec("AAAA-****", "XY");
        assert!(draw_unique(&s, 17, &mut FastRng::seeded(3), |_| false).is_none());
    }

    #[test]
    fn bucket_lookup_misses_absent_and_misshaped_codes() {
        let codes = b"AAABBBCCC";
        assert_eq!(find_in_bucket(codes, 3, b"BBB"), Some(1));
        assert_eq!(find_in_bucket(codes, 3, b"BBC"), None);
        assert_eq!(find_in_bucket(codes, 3, b"BB"), None);
        assert_eq!(find_in_bucket(b"", 3, b"AAA"), None);
    }
}
