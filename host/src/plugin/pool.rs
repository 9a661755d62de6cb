//! Idle instances of a plugin whose config says `reuse = true`: an instance
//! that finished a transaction waits here for the next transaction of any
//! session, so that transaction pays neither a new store nor a new `init`
//! (the instance's parsed config stays in its memory).
//!
//! An instance is not kept when it failed (it may be poisoned), when a
//! call in it was abandoned midway, when it has served [`MAX_USES`]
//! transactions, or when its memory grew past half its budget: a plugin
//! that leaks a little per transaction is renewed long before the leak
//! makes a call fail. At most [`MAX_IDLE`] wait per
//! plugin; a plugin set swapped out by a reload keeps none.

use super::instance::Instance;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Idle instances kept per plugin: enough for the sessions of a busy node
/// on two cores, few enough that a dozen plugins stay far inside the
/// pooling allocator's 1000 instances.
pub const MAX_IDLE: usize = 32;

/// Transactions one instance serves before it is renewed.
pub const MAX_USES: u32 = 10_000;

/// The idle instances of one loaded plugin.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<Instance>>,
    retired: AtomicBool,
    /// Instances created (each ran `init`).
    pub created: AtomicU64,
    /// Transactions served by an instance taken from the pool.
    pub reused: AtomicU64,
}

impl Pool {
    /// An idle instance, if one waits.
    pub(super) fn take(&self) -> Option<Instance> {
        let inst = self.idle.lock().unwrap().pop()?;
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(inst)
    }

    /// Keep `inst`, which finished a transaction without failing, unless
    /// it is worn out, the pool is full, or the plugin was swapped out.
    pub(super) fn give_back(&self, mut inst: Instance) {
        inst.uses += 1;
        if inst.in_call
            || inst.uses >= MAX_USES
            || inst.memory_worn()
            || self.retired.load(Ordering::Acquire)
        {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < MAX_IDLE {
            idle.push(inst);
        }
    }

    /// The plugin left the current set: drop the idle instances and keep
    /// none from now on (sessions still using the old set finish with
    /// their own).
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        let drained: Vec<Instance> = std::mem::take(&mut *self.idle.lock().unwrap());
        drop(drained);
    }

    /// Idle instances now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}
