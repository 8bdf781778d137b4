//! The state machine's sled tree, and replacing it whole. Installing a snapshot replaces the
//! entire state; written into the live tree, it would show readers (tails, history, the
//! HTTP API) half of it, and a crash would leave half of it. So a snapshot goes into a
//! fresh tree (`sm.N`) and is switched to in one step: the tree's name is recorded under
//! `state/current` only after the new tree is complete and flushed, and readers reach the
//! tree through a lock the switch takes. Trees left by a crash mid-install, or by a crash
//! before the old tree was dropped, are dropped at open.
use std::sync::{Arc, RwLock};

use crate::StorageError;

/// The first state tree's name (and the only one before snapshots were installed this way).
pub(crate) const FIRST: &str = "sm";
/// The tree holding which state tree is current.
pub(crate) const POINTER_TREE: &str = "state";
pub(crate) const CURRENT: &[u8] = b"current";

/// Whether the sled tree `name` is a state tree (current or not).
pub(crate) fn is_state_tree(name: &[u8]) -> bool {
    name == FIRST.as_bytes() || name.starts_with(b"sm.")
}

/// The current state tree's name as recorded in `db`.
pub(crate) fn current_name(db: &sled::Db) -> Result<Vec<u8>, StorageError> {
    let pointer = db.open_tree(POINTER_TREE)?;
    Ok(pointer.get(CURRENT)?.map_or_else(|| FIRST.as_bytes().to_vec(), |n| n.to_vec()))
}

/// The current state tree, shared by the state machine and its views.
#[derive(Clone)]
pub(crate) struct StateTrees {
    db: sled::Db,
    current: Arc<RwLock<sled::Tree>>,
}

impl StateTrees {
    pub(crate) fn open(db: &sled::Db) -> Result<StateTrees, StorageError> {
        let name = current_name(db)?;
        for other in db.tree_names() {
            if is_state_tree(&other) && *other != *name {
                db.drop_tree(&other)?;
            }
        }
        let tree = db.open_tree(&name)?;
        Ok(StateTrees { db: db.clone(), current: Arc::new(RwLock::new(tree)) })
    }

    /// The current tree, for apply and snapshot builds (never concurrent with a switch).
    pub(crate) fn current(&self) -> sled::Tree {
        self.read(sled::Tree::clone)
    }

    /// Runs a read on the current tree; a switch waits for it.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&sled::Tree) -> R) -> R {
        let tree = self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&tree)
    }

    /// A new empty tree to install a snapshot into.
    pub(crate) fn fresh(&self) -> Result<sled::Tree, StorageError> {
        let current = self.current();
        let n = current
            .name()
            .strip_prefix(b"sm.")
            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let name = format!("sm.{}", n + 1);
        self.db.drop_tree(&name)?;
        Ok(self.db.open_tree(&name)?)
    }

    /// Drops a tree `fresh` made that will not be switched to.
    pub(crate) fn discard(&self, tree: &sled::Tree) -> Result<(), StorageError> {
        self.db.drop_tree(tree.name())?;
        Ok(())
    }

    /// Makes `tree` (complete) the current state tree, durably, and drops the old one.
    pub(crate) fn switch(&self, tree: sled::Tree) -> Result<(), StorageError> {
        self.db.flush()?;
        self.db.open_tree(POINTER_TREE)?.insert(CURRENT, tree.name())?;
        self.db.flush()?;
        let old = {
            let mut current = self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::replace(&mut *current, tree)
        };
        self.db.drop_tree(old.name())?;
        Ok(())
    }
}
