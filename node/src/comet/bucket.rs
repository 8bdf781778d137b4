//! A shard of the comet's connections: key → channel, and room → members for the channels
//! of this shard. Sharding by key keeps lock contention low; a room push visits every
//! bucket. Room membership changes only here, under the bucket lock, so the index and each
//! channel's own `room` always agree.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use super::channel::Channel;
use super::room::Room;
use super::{read, write};

#[derive(Default)]
pub struct Bucket {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    channels: HashSet<ByKey>,
    rooms: HashMap<String, Room>,
}

/// A channel in the key index, found by its own key: the index keeps no copy of it.
struct ByKey(Arc<Channel>);

impl Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.key
    }
}

impl Hash for ByKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.as_str().hash(state);
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &ByKey) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for ByKey {}

impl State {
    fn is_current(&self, ch: &Channel) -> bool {
        self.channels.get(ch.key.as_str()).is_some_and(|current| current.0.conn == ch.conn)
    }

    fn join_room(&mut self, ch: &Arc<Channel>) {
        if let Some(room) = ch.room() {
            self.rooms.entry(room).or_default().join(ch.clone());
        }
    }

    fn leave_room(&mut self, ch: &Channel) {
        let Some(room_id) = ch.room() else {
            return;
        };
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.leave(ch.conn);
            if room.is_empty() {
                self.rooms.remove(&room_id);
            }
        }
    }
}

impl Bucket {
    /// Adds `ch` under its key and joins its room; returns the channel it replaced (which
    /// has left its room already; the caller closes it).
    pub fn put(&self, ch: Arc<Channel>) -> Option<Arc<Channel>> {
        let mut state = write(&self.state);
        let old = state.channels.replace(ByKey(ch.clone())).map(|old| old.0);
        if let Some(old) = &old {
            state.leave_room(old);
        }
        state.join_room(&ch);
        old
    }

    /// Removes `ch` and leaves its room, if it is still the channel of its key.
    pub fn remove(&self, ch: &Channel) -> bool {
        let mut state = write(&self.state);
        if !state.is_current(ch) {
            return false;
        }
        state.channels.remove(ch.key.as_str());
        state.leave_room(ch);
        true
    }

    /// Moves `ch` to `room` (`None`: no room). A channel no longer registered only has its
    /// own field updated. The channel holds its frames from the move on, until the caller
    /// resumes it (with the new room's replay).
    pub fn change_room(&self, ch: &Arc<Channel>, room: Option<String>) {
        let mut state = write(&self.state);
        ch.hold();
        if !state.is_current(ch) {
            ch.set_room(room);
            return;
        }
        state.leave_room(ch);
        ch.set_room(room);
        state.join_room(ch);
    }

    pub fn get(&self, key: &str) -> Option<Arc<Channel>> {
        read(&self.state).channels.get(key).map(|current| current.0.clone())
    }

    pub fn conn_count(&self) -> usize {
        read(&self.state).channels.len()
    }

    pub fn room_len(&self, room: &str) -> usize {
        read(&self.state).rooms.get(room).map_or(0, Room::len)
    }

    /// Calls `f` for each member of `room` in this bucket, under the read lock (`f` must
    /// not block).
    pub fn for_room(&self, room: &str, mut f: impl FnMut(&Arc<Channel>)) {
        if let Some(room) = read(&self.state).rooms.get(room) {
            room.members().for_each(&mut f);
        }
    }

    /// Calls `f` for each channel in this bucket, under the read lock.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Channel>)) {
        read(&self.state).channels.iter().for_each(|current| f(&current.0));
    }

    /// Adds this bucket's per-room member counts to `counts`.
    pub fn add_room_counts(&self, counts: &mut BTreeMap<String, u32>) {
        for (id, room) in &read(&self.state).rooms {
            let n = u32::try_from(room.len()).unwrap_or(u32::MAX);
            let total = counts.entry(id.clone()).or_default();
            *total = total.saturating_add(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comet::channel::{QueuePolicy, Session};
    use crate::comet::SlowConsumer;
    use std::net::{IpAddr, Ipv4Addr};

    fn channel(conn: u64, key: &str, room: Option<&str>) -> Arc<Channel> {
        let session = Session { key: key.into(), mid: 1, room: room.map(Into::into), accepts: vec![] };
        let policy = QueuePolicy { capacity: 8, slow: SlowConsumer::Close };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Arc::new(Channel::new(conn, ip, session, policy))
    }

    fn members(bucket: &Bucket, room: &str) -> Vec<u64> {
        let mut conns = Vec::new();
        bucket.for_room(room, |ch| conns.push(ch.conn));
        conns.sort_unstable();
        conns
    }

    #[test]
    fn put_replaces_the_same_key_and_moves_room_membership() {
        let bucket = Bucket::default();
        let old = channel(1, "k", Some("a"));
        assert!(bucket.put(old.clone()).is_none());
        assert!(bucket.put(channel(2, "other", Some("a"))).is_none());
        let new = channel(3, "k", Some("b"));
        let replaced = bucket.put(new.clone()).unwrap();
        assert_eq!(replaced.conn, 1);
        assert_eq!(members(&bucket, "a"), [2]);
        assert_eq!(members(&bucket, "b"), [3]);
        assert_eq!(bucket.conn_count(), 2);

        assert!(!bucket.remove(&old), "the replaced channel no longer owns the key");
        assert_eq!(bucket.get("k").unwrap().conn, 3);
        assert!(bucket.remove(&new));
        assert_eq!(bucket.room_len("b"), 0);
        assert_eq!(bucket.conn_count(), 1);
    }

    #[test]
    fn change_room_moves_between_rooms_and_counts_follow() {
        let bucket = Bucket::default();
        let ch = channel(1, "k", Some("a"));
        bucket.put(ch.clone());
        bucket.put(channel(2, "k2", Some("a")));
        bucket.change_room(&ch, Some("b".into()));
        assert_eq!(ch.room().as_deref(), Some("b"));
        let mut counts = BTreeMap::new();
        bucket.add_room_counts(&mut counts);
        assert_eq!(counts, BTreeMap::from([("a".into(), 1), ("b".into(), 1)]));
        bucket.change_room(&ch, None);
        assert_eq!(bucket.room_len("b"), 0);
        let mut counts = BTreeMap::new();
        bucket.add_room_counts(&mut counts);
        assert_eq!(counts, BTreeMap::from([("a".into(), 1)]));
    }

    #[test]
    fn change_room_of_a_removed_channel_touches_no_room() {
        let bucket = Bucket::default();
        let ch = channel(1, "k", None);
        bucket.change_room(&ch, Some("a".into()));
        assert_eq!(bucket.room_len("a"), 0);
        assert_eq!(ch.room().as_deref(), Some("a"));
    }
}
