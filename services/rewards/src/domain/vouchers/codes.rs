//! Bulk-generated voucher codes (GenerateVoucherCodes): drawn in memory, unique among
//! themselves and against the partner's taken codes, and laid out in hash buckets. A
//! generation is stored as one row per bucket holding that bucket's codes (sorted, fixed
//! width, concatenated), not one row per code: a lookup by code reads the code's bucket, one
//! small row per generation. A code's index in the layout (bucket-major, then code order)
//! gives its voucher id: the generation's first voucher id plus the index.
//!
//! Drawing checks each code against the partner's taken codes. Only codes the new spec can
//! draw can collide, so only those are read: a generation stores its spec
//! ([`CodeSpec::stored`]), and one whose spec cannot draw any code of the new spec
//! ([`may_overlap`]) is skipped; the codes that are read are kept as 64-bit fingerprints
//! ([`TakenCodes`]), 8 bytes a code.
use super::{CodeSpec, FastRng, Slot};

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

/// Index of a code character in a position mask: `0-9` → 0..=9, `A-Z` → 10..=35, `-` → 36.
fn char_bit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'-' => Some(36),
        _ => None,
    }
}

fn mask_of(chars: &[u8]) -> u64 {
    chars
        .iter()
        .filter_map(|c| char_bit(*c))
        .fold(0, |m, b| m | 1 << b)
}

/// The characters each position of a spec's codes can hold, one bit per character
/// (see `char_bit`). Positions are drawn independently, so a code can be drawn by the spec
/// exactly when each of its characters is allowed at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeShape {
    masks: Vec<u64>,
}

impl CodeShape {
    /// Whether the spec can draw `code`.
    pub fn matches(&self, code: &[u8]) -> bool {
        code.len() == self.masks.len()
            && code
                .iter()
                .zip(&self.masks)
                .all(|(c, m)| char_bit(*c).is_some_and(|b| m & (1 << b) != 0))
    }

    /// The literal start every code of the spec has (the prefix and the pattern's leading
    /// fixed characters).
    pub fn literal_prefix(&self) -> Vec<u8> {
        const ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-";
        self.masks
            .iter()
            .map_while(|m| (m.count_ones() == 1).then(|| ALPHABET[m.trailing_zeros() as usize]))
            .collect()
    }
}

/// Whether a code drawn by `a` can equal a code drawn by `b`: the same length and, at every
/// position, a character both can put there. Exact (not only a bound), because each
/// position is drawn independently of the others.
pub fn may_overlap(a: &CodeSpec, b: &CodeSpec) -> bool {
    let (a, b) = (a.shape(), b.shape());
    a.masks.len() == b.masks.len() && a.masks.iter().zip(&b.masks).all(|(x, y)| x & y != 0)
}

/// Separator of the stored form's parts; not a code or pattern character.
const STORED_SEP: char = '/';

impl CodeSpec {
    /// Characters allowed at each position.
    pub fn shape(&self) -> CodeShape {
        let (digits, letters, any) = (
            mask_of(&self.digits),
            mask_of(&self.letters),
            mask_of(&self.any),
        );
        CodeShape {
            masks: self
                .prefix
                .iter()
                .map(|c| mask_of(&[*c]))
                .chain(self.slots.iter().map(|s| match s {
                    Slot::Literal(c) => mask_of(&[*c]),
                    Slot::Digit => digits,
                    Slot::Letter => letters,
                    Slot::Any => any,
                }))
                .collect(),
        }
    }

    /// The spec as stored on its generation: the whole pattern with the prefix as literals
    /// (`#` digit, `?` letter, `*` any), then the digits, letters and characters drawn from,
    /// separated by `/`: `GOLD-####/23456789/ABCDEFGHJKLMNPQRSTUVWXYZ/23456789ABCD…`.
    pub fn stored(&self) -> String {
        let mut out: String = self.prefix.iter().map(|c| char::from(*c)).collect();
        out.extend(self.slots.iter().map(|s| match s {
            Slot::Literal(c) => char::from(*c),
            Slot::Digit => '#',
            Slot::Letter => '?',
            Slot::Any => '*',
        }));
        for set in [&self.digits, &self.letters, &self.any] {
            out.push(STORED_SEP);
            out.extend(set.iter().map(|c| char::from(*c)));
        }
        out
    }

    /// A spec read back from [`CodeSpec::stored`]; `None` if `s` is not one (a caller then
    /// treats the generation as able to hold any code of its length).
    pub fn from_stored(s: &str) -> Option<CodeSpec> {
        let mut parts = s.split(STORED_SEP);
        let (pattern, digits, letters, any) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let set = |p: &str, ok: fn(&u8) -> bool| {
            (!p.is_empty() && p.bytes().all(|c| ok(&c))).then(|| p.as_bytes().to_vec())
        };
        let code_char = |c: &u8| c.is_ascii_uppercase() || c.is_ascii_digit();
        let slots = pattern
            .bytes()
            .map(|c| match c {
                b'#' => Some(Slot::Digit),
                b'?' => Some(Slot::Letter),
                b'*' => Some(Slot::Any),
                c if code_char(&c) || c == b'-' => Some(Slot::Literal(c)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(CodeSpec {
            prefix: Vec::new(),
            slots,
            digits: set(digits, u8::is_ascii_digit)?,
            letters: set(letters, u8::is_ascii_uppercase)?,
            any: set(any, code_char)?,
        })
    }
}

/// A 64-bit fingerprint of a code (wyhash-style multiply-mix of its 8-byte words and its
/// length): equal codes have equal fingerprints; different codes share one with probability
/// about 2^-64.
pub fn fingerprint(code: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    fn mix(a: u64, b: u64) -> u64 {
        let t = u128::from(a) * u128::from(b);
        (t as u64) ^ ((t >> 64) as u64)
    }
    let mut h = K0 ^ code.len() as u64;
    for w in code.chunks(8) {
        let mut word = [0u8; 8];
        word[..w.len()].copy_from_slice(w);
        h = mix(h ^ u64::from_le_bytes(word), K1);
    }
    mix(h, K0 ^ K1)
}

/// The partner's taken codes a new generation could draw, as sorted, distinct 64-bit
/// fingerprints (8 bytes a code instead of a boxed string and a hash-set slot), with a
/// directory on their top bits so that a lookup searches a handful of entries.
///
/// Membership is by fingerprint: a drawn code whose fingerprint is in the set counts as taken
/// even if only another code has that fingerprint. That false positive only makes the code be
/// drawn again (the chance is below 2^-40 per draw for 10^7 taken codes), and a code that is
/// really taken always matches its own fingerprint, so no taken code is ever handed out:
/// uniqueness stays exact.
#[derive(Debug, Clone, Default)]
pub struct TakenCodes {
    shape: Option<CodeShape>,
    sorted: Vec<u64>,
    /// `dir[k]..dir[k + 1]`: the positions in `sorted` of fingerprints whose top bits are `k`.
    dir: Vec<u32>,
    shift: u32,
}

impl TakenCodes {
    /// An empty set collecting the codes `shape` matches (others cannot be drawn).
    pub fn collecting(shape: CodeShape) -> Self {
        TakenCodes {
            shape: Some(shape),
            ..Default::default()
        }
    }

    /// Room for `n` more codes.
    pub fn reserve(&mut self, n: usize) {
        self.sorted.reserve(n);
    }

    /// Adds a code, if the shape matches it. Call [`TakenCodes::seal`] before looking up.
    pub fn add(&mut self, code: &[u8]) {
        if self.shape.as_ref().is_none_or(|s| s.matches(code)) {
            self.sorted.push(fingerprint(code));
        }
    }

    /// Adds the codes of `codes`, concatenated `len` bytes each.
    pub fn add_concatenated(&mut self, codes: &[u8], len: usize) {
        if len > 0 {
            for c in codes.chunks_exact(len) {
                self.add(c);
            }
        }
    }

    /// Sorts and indexes the fingerprints added.
    pub fn seal(&mut self) {
        self.sorted.sort_unstable();
        self.sorted.dedup();
        // About 8 fingerprints per directory slot, 2..2^24 slots.
        let bits = (usize::BITS - self.sorted.len().leading_zeros())
            .saturating_sub(3)
            .clamp(1, 24);
        self.shift = 64 - bits;
        let slots = 1usize << bits;
        self.dir = Vec::with_capacity(slots + 1);
        let mut i = 0usize;
        for k in 0..slots {
            while i < self.sorted.len() && ((self.sorted[i] >> self.shift) as usize) < k {
                i += 1;
            }
            self.dir.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        self.dir
            .push(u32::try_from(self.sorted.len()).unwrap_or(u32::MAX));
    }

    /// Distinct fingerprints held.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Whether `code` counts as taken (see the type's note on fingerprints).
    pub fn contains(&self, code: &[u8]) -> bool {
        let f = fingerprint(code);
        let k = (f >> self.shift) as usize;
        let (Some(from), Some(to)) = (self.dir.get(k), self.dir.get(k + 1)) else {
            return false;
        };
        self.sorted
            .get(*from as usize..*to as usize)
            .is_some_and(|s| s.binary_search(&f).is_ok())
    }
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

    fn spec_with(prefix: &str, pattern: &str, charset: &str) -> CodeSpec {
        CodeSpec::parse(
            &mut Violations::new(),
            &CodeRequest {
                prefix: prefix.into(),
                pattern: pattern.into(),
                charset: charset.into(),
                length: 0,
            },
        )
        .expect("valid spec")
    }

    #[test]
    fn specs_with_another_literal_prefix_or_length_cannot_overlap() {
        let gold = spec_with("GOLD", "####-????", "");
        assert!(may_overlap(&gold, &gold));
        assert!(!may_overlap(&gold, &spec_with("SILV", "####-????", "")));
        assert!(!may_overlap(&gold, &spec_with("GOLD", "####-???", "")));
        // The same codes spelled as a prefix or as the pattern's literals.
        assert!(may_overlap(&gold, &spec("GOLD-####-????", "")));
        // Letters where the other has digits.
        assert!(!may_overlap(&gold, &spec_with("GOLD", "????-????", "")));
        // `*` over letters and digits meets both.
        assert!(may_overlap(&gold, &spec_with("GOLD", "****-????", "")));
        assert!(may_overlap(
            &spec_with("GOLD", "****-????", ""),
            &spec_with("GOLD", "????-????", "")
        ));
    }

    #[test]
    fn disjoint_charsets_at_one_position_cannot_overlap() {
        assert!(!may_overlap(
            &spec("AAAA-##-####", "23AB"),
            &spec("AAAA-##-####", "45AB")
        ));
        assert!(may_overlap(
            &spec("AAAA-##-####", "23AB"),
            &spec("AAAA-##-####", "34AB")
        ));
        // A charset without digits draws `#` from all ten digits.
        assert!(may_overlap(
            &spec("AAAA-##-####", "AB"),
            &spec("AAAA-##-####", "45AB")
        ));
        // The default alphabet has no 0/O/1/I: a literal 0 cannot meet a `*`.
        assert!(!may_overlap(&spec("0*******", ""), &spec("********", "")));
    }

    #[test]
    fn a_stored_spec_reads_back_with_the_same_codes() {
        for s in [
            spec_with("GOLD", "####-????", ""),
            spec_with("", "", ""),
            spec_with("X1", "**-##-AB", "ABC123"),
        ] {
            let back = CodeSpec::from_stored(&s.stored()).expect("stored form");
            assert_eq!(back.shape(), s.shape());
            assert_eq!(back.stored(), s.stored());
            assert_eq!(back.combinations(), s.combinations());
        }
        assert_eq!(
            spec_with("GOLD", "###", "AB23").stored(),
            "GOLD-###/23/AB/23AB"
        );
        for bad in [
            "",
            "GOLD",
            "A/1/B/C/D",
            "GOLD-#/12/AB",
            "GO%D/1/A/A",
            "G/1/A/",
        ] {
            assert!(CodeSpec::from_stored(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_literal_prefix_is_the_fixed_start_of_every_code() {
        let shape = spec_with("GOLD", "####-????", "").shape();
        assert_eq!(shape.literal_prefix(), b"GOLD-");
        assert_eq!(spec("AB-9#CD-??", "").shape().literal_prefix(), b"AB-9");
        assert_eq!(spec_with("", "", "").shape().literal_prefix(), b"");
        // A charset with one digit fixes `#` too.
        assert_eq!(spec("Q#*-****", "Z9").shape().literal_prefix(), b"Q9");
    }

    #[test]
    fn a_shape_matches_exactly_the_codes_its_spec_draws() {
        let s = spec_with("GOLD", "####-????", "");
        let shape = s.shape();
        let mut rng = FastRng::seeded(3);
        let mut out = Vec::new();
        for _ in 0..1000 {
            out.clear();
            s.draw(&mut rng, &mut out);
            assert!(shape.matches(&out));
        }
        for other in [
            "GOLD-2345-ABC",
            "GOLD-2345-ABCDE",
            "SILV-2345-ABCD",
            "GOLD-2345-ABC1",
            "GOLD-2340-ABCD",
            "GOLD-2345-ABCO",
            "gold-2345-ABCD",
        ] {
            assert!(!shape.matches(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn taken_codes_hold_what_the_shape_can_draw_and_nothing_else() {
        let s = spec_with("GOLD", "####-????", "");
        let first = draw_unique(&s, 50_000, &mut FastRng::seeded(21), |_| false).unwrap();
        let mut taken = TakenCodes::collecting(s.shape());
        taken.add_concatenated(&first.codes, first.code_len);
        taken.add_concatenated(&first.codes[..14 * 10], first.code_len);
        taken.add(b"SILV-2345-ABCD");
        taken.add(b"GOLD-23-AB");
        taken.seal();
        assert_eq!(taken.len(), 50_000);
        assert!((0..first.len()).all(|i| taken.contains(first.code(i))));
        let seen: HashSet<&[u8]> = (0..first.len()).map(|i| first.code(i)).collect();
        let more = draw_unique(&s, 50_000, &mut FastRng::seeded(22), |_| false).unwrap();
        for i in 0..more.len() {
            assert_eq!(taken.contains(more.code(i)), seen.contains(more.code(i)));
        }
        assert!(!taken.contains(b"SILV-2345-ABCD"));
        let mut empty = TakenCodes::default();
        assert!(!empty.contains(b"GOLD-2345-ABCD"));
        empty.seal();
        assert!(!empty.contains(b"GOLD-2345-ABCD"));
    }

    #[test]
    fn drawing_against_fingerprints_never_hands_out_a_taken_code() {
        let s = spec("GOLD-####-?", "");
        let first = draw_unique(&s, 20_000, &mut FastRng::seeded(5), |_| false).unwrap();
        let mut taken = TakenCodes::collecting(s.shape());
        taken.add_concatenated(&first.codes, first.code_len);
        taken.seal();
        let second =
            draw_unique(&s, 20_000, &mut FastRng::seeded(6), |c| taken.contains(c)).unwrap();
        let old: HashSet<&[u8]> = (0..first.len()).map(|i| first.code(i)).collect();
        assert!((0..second.len()).all(|i| !old.contains(second.code(i))));
        assert!(second.collisions > 0);
    }

    mod overlap {
        use super::*;
        use proptest::prelude::*;

        fn request() -> impl Strategy<Value = CodeRequest> {
            (
                prop::sample::select(vec!["", "A", "AB", "1", "B2"]),
                prop::collection::vec(
                    prop::sample::select(vec!['#', '?', '*', 'A', 'B', '1', '2', '-']),
                    8..11,
                ),
                prop::sample::select(vec!["AB", "A1", "12", "AB12", "B2", "1A2", "ZY"]),
            )
                .prop_map(|(prefix, pattern, charset)| CodeRequest {
                    prefix: prefix.into(),
                    pattern: pattern.into_iter().collect(),
                    charset: charset.into(),
                    length: 0,
                })
        }

        fn sample(s: &CodeSpec, seed: u64) -> HashSet<Vec<u8>> {
            let mut rng = FastRng::seeded(seed);
            (0..300)
                .map(|_| {
                    let mut out = Vec::new();
                    s.draw(&mut rng, &mut out);
                    out
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Two specs whose sampled codes meet always may overlap; specs that may overlap
            /// share a code both shapes accept; specs read back from storage agree.
            #[test]
            fn sampled_codes_in_common_imply_may_overlap(
                a in request(),
                b in request(),
                seed in any::<u64>(),
            ) {
                let (Some(a), Some(b)) = (
                    CodeSpec::parse(&mut Violations::new(), &a),
                    CodeSpec::parse(&mut Violations::new(), &b),
                ) else {
                    return Ok(());
                };
                let (sa, sb) = (sample(&a, seed), sample(&b, seed ^ 1));
                let overlap = may_overlap(&a, &b);
                if !sa.is_disjoint(&sb) {
                    prop_assert!(overlap);
                }
                prop_assert!(sa.iter().all(|c| a.shape().matches(c)));
                prop_assert_eq!(
                    may_overlap(&CodeSpec::from_stored(&a.stored()).unwrap(), &b),
                    overlap
                );
                if overlap {
                    // Exactness: the first common character at every position is a code of
                    // both.
                    let (ma, mb) = (a.shape(), b.shape());
                    let witness: Vec<u8> = ma
                        .masks
                        .iter()
                        .zip(&mb.masks)
                        .map(|(x, y)| b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-"
                            [(x & y).trailing_zeros() as usize])
                        .collect();
                    prop_assert!(ma.matches(&witness) && mb.matches(&witness));
                }
            }
        }
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
