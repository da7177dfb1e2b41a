//! The backends chosen for the keys of one request, remembered while it is split. The spans of a trace are seldom
//! all adjacent in a request (a batch holds spans grouped by service, then in the order they ended), and asking
//! the pool costs a ring read and a trace-affinity lookup under a lock; a request usually holds a few dozen keys.
//! Remembering them also keeps every item of a key in one request on one backend even if a backend is ejected
//! while the request is being split.

/// Slots of the cache: direct-mapped on a key's low bits (keys are hashes), so a lookup is one compare.
const SLOTS: usize = 64;

/// A direct-mapped cache of key → backend index for one request; a key whose slot another key took is looked
/// up again.
pub struct Owners {
    keys: [u64; SLOTS],
    owners: [usize; SLOTS],
    /// Bit `i` set: slot `i` holds an entry.
    filled: u64,
}

impl Default for Owners {
    fn default() -> Self {
        Owners { keys: [0; SLOTS], owners: [0; SLOTS], filled: 0 }
    }
}

impl Owners {
    /// The backend of `key`: the remembered one, or `lookup(key)`, remembered.
    #[inline]
    pub fn get(&mut self, key: u64, lookup: impl FnOnce(u64) -> usize) -> usize {
        let slot = (key as usize) % SLOTS;
        if self.filled & (1 << slot) != 0 && self.keys[slot] == key {
            return self.owners[slot];
        }
        let owner = lookup(key);
        self.keys[slot] = key;
        self.owners[slot] = owner;
        self.filled |= 1 << slot;
        owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_once_per_key_and_again_after_a_collision() {
        let mut owners = Owners::default();
        let mut asked = Vec::new();
        let mut get = |owners: &mut Owners, key: u64| {
            owners.get(key, |k| {
                asked.push(k);
                (k % 7) as usize
            })
        };
        for key in [3, 0, 3, 0, 3] {
            assert_eq!(get(&mut owners, key), (key % 7) as usize);
        }
        // 67 takes the slot of 3 (67 % 64 == 3); 3 is then looked up again.
        for key in [67, 67, 3] {
            assert_eq!(get(&mut owners, key), (key % 7) as usize);
        }
        assert_eq!(asked, vec![3, 0, 67, 3], "key 0 is remembered like any other; a collision asks again");
    }

    #[test]
    fn an_empty_cache_remembers_nothing() {
        let mut owners = Owners::default();
        // Slot 0 holds key 0 in an empty cache's arrays: the filled bits must say it is not an entry.
        assert_eq!(owners.get(0, |_| 5), 5);
        assert_eq!(owners.get(0, |_| unreachable!("remembered")), 5);
    }
}
