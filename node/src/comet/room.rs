//! One room's members within one bucket. A room push reaches every member regardless of
//! accepts; members are keyed by conn id so a replaced channel can leave without touching
//! its successor.

use std::collections::HashMap;
use std::sync::Arc;

use super::channel::Channel;

#[derive(Default)]
pub struct Room {
    members: HashMap<u64, Arc<Channel>>,
}

impl Room {
    pub fn join(&mut self, ch: Arc<Channel>) {
        self.members.insert(ch.conn, ch);
    }

    pub fn leave(&mut self, conn: u64) -> bool {
        self.members.remove(&conn).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> impl Iterator<Item = &Arc<Channel>> {
        self.members.values()
    }
}
