//! Source changes the controller's monitor applied, told to whatever else in
//! the same process caches the view: the mount engine's server, whose kernel
//! keeps entries and attributes that a change from outside the view would
//! leave stale. A process-wide list, so the monitor and the server need not
//! know each other (neither crate depends on the other).

use std::sync::{Arc, RwLock};

/// What changed at a virtual path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceChange {
    /// The entry appeared or went (the journal already says so).
    Entry,
    /// The file's contents or attributes changed in place.
    Contents,
}

type Listener = Arc<dyn Fn(&[u8], SourceChange) + Send + Sync>;

static LISTENERS: RwLock<Vec<(u64, Listener)>> = RwLock::new(Vec::new());
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Listening until dropped.
pub struct Subscription(u64);

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut l = LISTENERS.write().unwrap_or_else(|e| e.into_inner());
        l.retain(|(id, _)| *id != self.0);
    }
}

/// Calls `f` for every change told after this returns.
pub fn subscribe(f: impl Fn(&[u8], SourceChange) + Send + Sync + 'static) -> Subscription {
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    LISTENERS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, Arc::new(f)));
    Subscription(id)
}

/// Tells every listener that virtual path `virt` changed.
pub fn changed(virt: &[u8], what: SourceChange) {
    let l: Vec<Listener> = LISTENERS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(_, f)| f.clone())
        .collect();
    for f in l {
        f(virt, what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn listeners_hear_changes_until_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sub = subscribe(move |p, w| s.lock().unwrap().push((p.to_vec(), w)));
        changed(b"/g/a", SourceChange::Entry);
        drop(sub);
        changed(b"/g/b", SourceChange::Contents);
        let seen = seen.lock().unwrap();
        assert_eq!(*seen, vec![(b"/g/a".to_vec(), SourceChange::Entry)]);
    }
}
